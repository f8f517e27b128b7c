"""Property-based: whatever is thrown at the CLI, it answers. Random overrides (real keys and made-up
ones, values of every type, option names that exist and that do not) and random malformed CSV/TSV
files must never hang, never end in an unhandled traceback, and never leave a FINISHED run unless the
command succeeded.

The examples run in-process through ``pipeline.cli.train.main`` (the CLI's code path, without ~5 s of
imports each); two run as real processes.
"""
from __future__ import annotations

import functools
import signal
import string
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import compose, run_cli, run_cli_in_process, runs_in

# Kept out of the random keys and fixed on every command, so that a valid example trains for seconds:
# a test must not be able to ask for a week of training or a download.
SPEED_AND_SAFETY = {
    "trainer.max_epochs": "1",
    "trainer.min_epochs": "1",
    "trainer.limit_train_batches": "2",
    "trainer.limit_val_batches": "2",
    "trainer.limit_test_batches": "2",
    "data.limit_rows": "300",
}
# group options that need no network and no data outside the project (plus made-up names)
GROUP_OPTIONS = {
    "task": ["classification", "regression", "image_classification"],
    "data": ["breast_cancer", "diabetes", "wine", "digits", "synthetic_binary", "synthetic_linear", "csv"],
    "model": ["mlp", "linear", "logistic", "cnn", "bow", "textcnn", "rnn"],
    "optimizer": ["adam", "adamw", "sgd", "rmsprop"],
    "scheduler": ["none", "step", "cosine", "onecycle", "plateau"],
    "callbacks": ["default", "early_stopping", "none"],
}
SECONDS_PER_EXAMPLE = 60


@functools.lru_cache(maxsize=1)
def real_keys() -> list[str]:
    """Every leaf key of the real config under the default and the other tasks (scalars and lists)."""
    from omegaconf import OmegaConf

    keys: set[str] = set()
    for task in GROUP_OPTIONS["task"]:
        flat = _leaves(OmegaConf.to_container(compose([f"task={task}"]), resolve=False))
        keys |= {k for k in flat if not k.startswith(("paths.", "logger.")) and k not in SPEED_AND_SAFETY}
    return sorted(keys)


def _leaves(tree, prefix: str = "") -> list[str]:
    if isinstance(tree, dict):
        return [leaf for key, value in tree.items() for leaf in _leaves(value, f"{prefix}{key}.")]
    return [prefix[:-1]]


word = st.text(string.ascii_lowercase + "_", min_size=1, max_size=10)
scalar = st.one_of(
    st.integers(-3, 300).map(str),
    st.floats(allow_nan=True, allow_infinity=True, width=32).map(repr),
    st.sampled_from(["true", "false", "null", "''", "abc", "1e-9", "-0.0", "1e308", "[]", "{}", "???"]),
    st.text(string.ascii_letters + string.digits + " ,.:-_[]{}$'\"=", max_size=12),
)
value = st.one_of(scalar, st.lists(st.integers(-2, 64).map(str), max_size=3).map(lambda v: "[" + ",".join(v) + "]"))


@st.composite
def overrides(draw) -> list[str]:
    chosen: dict[str, str] = {}
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["real key", "group option", "made-up key", "made-up option"]))
        if kind == "real key":
            chosen[draw(st.sampled_from(real_keys()))] = draw(value)
        elif kind == "group option":
            group = draw(st.sampled_from(sorted(GROUP_OPTIONS)))
            chosen[group] = draw(st.sampled_from(GROUP_OPTIONS[group]))
        elif kind == "made-up key":
            chosen[f"{draw(st.sampled_from(['', 'data.', 'model.', 'trainer.']))}{draw(word)}"] = draw(value)
        else:
            chosen[draw(st.sampled_from(sorted(GROUP_OPTIONS)))] = draw(word)
    return [f"{key}={text}" for key, text in chosen.items()]


cell = st.one_of(st.integers(0, 2).map(str), st.integers(-5, 5).map(str),
                 st.floats(allow_nan=True, allow_infinity=True).map(str),
                 st.sampled_from(["", " ", "abc", "0.5", "nan", '"', "1,2", "\t"]),
                 st.text(string.printable, max_size=6))


@st.composite
def table(draw, separator: str) -> str:
    header = draw(st.sampled_from([["a", "b", "label"], ["sentence", "label"], ["x", "y"], []]))
    width = len(header) or 2
    # mostly rows of the right width, so that examples also get past the column count
    row = st.one_of(st.lists(cell, min_size=width, max_size=width), st.lists(cell, max_size=4))
    rows = draw(st.lists(row, max_size=25))
    lines = [separator.join(header)] if header else []
    lines += [separator.join(row) for row in rows]
    return "\n".join(lines) + draw(st.sampled_from(["", "\n", "\n\n"]))


class Hung(BaseException):
    """An example ran past its time; a BaseException, so no handler in the pipeline swallows it."""


@contextmanager
def time_limit(seconds: int):
    def expire(signum, frame):
        raise Hung(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_statuses(store: dict) -> dict[str, str]:
    if not Path(store["uri"][len("sqlite:///"):]).exists():
        return {}
    return {run.info.run_id: run.info.status for run in runs_in(store)}


def assert_answered(result, store: dict, runs_before: dict[str, str]) -> None:
    """Exit 0, or 1/2 with one ``Error:`` line; no traceback; a FINISHED run only for a success."""
    assert result.returncode in (0, 1, 2), (result.args, result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, (result.args, result.stderr[-3000:])
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, (result.args, result.stderr[-3000:])
        new_runs = {k: v for k, v in run_statuses(store).items() if k not in runs_before}
        assert "FINISHED" not in new_runs.values(), (result.args, new_runs)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict:
    """One store for all examples (creating an MLflow database costs seconds); outputs per example."""
    root = tmp_path_factory.mktemp("fuzz")
    (root / "empty-data").mkdir()
    (root / "mlruns").mkdir()
    return {"uri": f"sqlite:///{root}/mlruns/mlflow.db", "artifacts": str(root / "mlruns" / "artifacts"),
            "tmp": root, "examples": iter(range(10**6))}


def throw_at_cli(workspace: dict, args: list[str], files: dict[str, str] = {}) -> None:
    """Write ``files`` (name -> text) into a fresh folder, run the CLI on ``args`` (``{dir}`` is that
    folder) and check the answer."""
    folder = workspace["tmp"] / f"example-{next(workspace['examples'])}"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    store = dict(workspace, outputs=folder / "outputs")
    fixed = [f"{key}={text}" for key, text in SPEED_AND_SAFETY.items()]
    before = run_statuses(store)
    with time_limit(SECONDS_PER_EXAMPLE):
        result = run_cli_in_process(
            [*fixed, f"paths.data_dir={workspace['tmp'] / 'empty-data'}", *(a.replace("{dir}", str(folder)) for a in args)],
            store)
    assert_answered(result, store, before)


@pytest.mark.slow
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(args=overrides())
def test_random_overrides_get_an_answer(workspace, args):
    throw_at_cli(workspace, args)


@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kind=st.sampled_from(["classification", "regression", "sentiment"]), data=st.data())
def test_random_malformed_files_get_an_answer(workspace, kind, data):
    if kind == "sentiment":
        throw_at_cli(workspace, ["task=sentiment", "data=text_tsv", "data.path={dir}/sst"],
                     {"sst/train.tsv": data.draw(table("\t"))})
    else:
        throw_at_cli(workspace, [f"task={kind}", "data=csv", "data.path={dir}/table.csv", "data.target=label"],
                     {"table.csv": data.draw(table(","))})


@pytest.mark.parametrize("args", [
    ["model.hidden_dims=[0,-1]", "optimizer.betas=abc"],
    ["data=wine", "model=textcnn", "model.kernel_sizes=[]"],
])
def test_random_looking_input_through_the_real_cli(store, args):
    result = run_cli([*(f"{k}={v}" for k, v in SPEED_AND_SAFETY.items()), *args], store, timeout=SECONDS_PER_EXAMPLE * 3)
    assert_answered(result, store, runs_before={})
