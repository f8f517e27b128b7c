"""Tables as they come: string and missing columns, several file formats, refusals, and a logged model that
takes raw rows (``mlflow.pyfunc``) and answers like ``pipeline-predict``.

Training runs go through the real CLI (``python -m pipeline.cli.train``); refusals through the CLI entry point
in-process (the same code path without ~5 s of imports); ``pipeline-predict`` through its ``main``.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import (another_thread_count, error_line, eval_cli, load_pyfunc, new_store, predict_cli, run_cli,
                      run_cli_in_process, runs_in)

SHORT_RUN = ["logger.mlflow.log_plots=false", "trainer.enable_progress_bar=false"]


# ----- helpers ---------------------------------------------------------------------------------------------
def finished_run(store: dict, result):
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    runs = runs_in(store)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED", [r.info.status for r in runs]
    return runs[0]


def assert_refused(result, store: dict, *fragments: str) -> None:
    """Exit 2, one ``Error:`` line naming every fragment, and no FINISHED run in the store."""
    assert result.returncode == 2, (result.returncode, result.stdout[-1500:], result.stderr[-3000:])
    line = error_line(result.stderr)
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    assert not Path(store["uri"][len("sqlite:///"):]).exists() or \
        all(run.info.status != "FINISHED" for run in runs_in(store))


# ----- a classification table with everything a real one has -------------------------------------------------
def people(rows: int, seed: int) -> pd.DataFrame:
    """Strings (with stray spaces, ``?`` and empty cells), a boolean, a small integer column, an id per row,
    and the label written ``1``, ``1.0``, `` 1`` or ``0``/``0.0``. The label follows ``score`` and ``colour``."""
    rng = np.random.default_rng(seed)
    score = rng.normal(size=rows)
    colour = rng.choice(["red", "green", "blue"], size=rows)
    label = (score + 1.5 * (colour == "red") - 0.5 > 0).astype(int)
    noise = np.round(rng.normal(size=rows), 3).astype(object)
    noise[rng.random(rows) < 0.15] = ""  # missing numbers
    colour_cell = np.array([f" {c} " if i % 5 == 0 else c for i, c in enumerate(colour)], dtype=object)
    colour_cell[rng.random(rows) < 0.05] = "?"
    spelled = {1: ["1", "1.0", '" 1"'], 0: ["0", "0.0"]}
    return pd.DataFrame({
        "id": [f"p{seed}-{i:05d}" for i in range(rows)],
        "score": np.round(score, 4),
        "colour": colour_cell,
        "member": rng.choice(["true", "false"], size=rows),
        "visits": rng.integers(0, 4, size=rows),
        "noise": noise,
        "label": [spelled[v][i % len(spelled[v])] for i, v in enumerate(label)],
    })


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    # by hand: pandas would quote the label '" 1"' itself
    lines = [",".join(frame.columns)] + [",".join(str(v) for v in row) for row in frame.itertuples(index=False)]
    path.write_text("\n".join(lines) + "\n")
    return path


def true_labels(path: Path) -> np.ndarray:
    raw = pd.read_csv(path, dtype=str, skipinitialspace=True)["label"].str.strip()
    return np.array([str(int(float(v))) for v in raw])


@pytest.fixture(scope="module")
def people_run(tmp_path_factory, migrated_store_db):
    folder = tmp_path_factory.mktemp("people")
    store = new_store(folder, migrated_store_db)
    train_csv = write_csv(people(600, seed=0), folder / "train.csv")
    test_csv = write_csv(people(300, seed=1), folder / "test.csv")
    result = run_cli(["task=classification", "data=csv", f"data.path={train_csv}", f"data.test_path={test_csv}",
                      "data.target=label", "trainer.max_epochs=20", "optimizer.lr=0.01", *SHORT_RUN], store)
    return {"store": store, "run": finished_run(store, result), "result": result, "train": train_csv,
            "test": test_csv, "folder": folder}


def test_strings_missing_values_and_label_spellings_train(people_run):
    run, result = people_run["run"], people_run["result"]
    assert run.data.metrics["test/acc"] > 0.9, run.data.metrics
    output = result.stdout + result.stderr
    # the id column is left out, and the notice says how to bring it back
    assert re.search(r"left out 'id' \(600 distinct values in 600 rows\).*data\.categorical=", output), output[-3000:]
    model = load_pyfunc(people_run["store"], run.info.run_id)
    inputs = [c["name"] for c in model.metadata.get_input_schema().to_dict()]
    assert inputs == ["score", "colour", "member", "visits", "noise"]  # raw names; no id, no target
    outputs = [c["name"] for c in model.metadata.get_output_schema().to_dict()]
    assert outputs == ["prediction", "probability_0", "probability_1"]  # '1', '1.0' and ' 1' are one class
    # the serving example is strict JSON: raw rows with a missing value wrote a bare NaN, refused outside Python
    import json

    from mlflow.artifacts import download_artifacts

    import mlflow

    mlflow.set_tracking_uri(people_run["store"]["uri"])
    try:
        folder = download_artifacts(artifact_uri=f"runs:/{run.info.run_id}/model",
                                    dst_path=str(people_run["folder"] / "model-copy"))
    finally:
        mlflow.set_tracking_uri(None)

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    example = json.loads((Path(folder) / "serving_input_example.json").read_text(), parse_constant=refuse)
    assert example["dataframe_split"]["columns"] == inputs


def test_pyfunc_on_raw_rows_equals_pipeline_predict_and_the_test_metrics(people_run):
    store, run, folder = people_run["store"], people_run["run"], people_run["folder"]
    raw = pd.read_csv(people_run["test"])  # as pandas reads the file: strings, '?', NaN, the id and the label
    by_mlflow = load_pyfunc(store, run.info.run_id).predict(raw)
    accuracy = float((by_mlflow["prediction"].to_numpy() == true_labels(people_run["test"])).mean())
    assert accuracy == pytest.approx(run.data.metrics["test/acc"], abs=1e-6)  # the metric is a float32

    output = folder / "predictions.csv"
    code, stdout, stderr = predict_cli([run.info.run_id, "--input", str(people_run["test"]), "--output", str(output),
                                        "--keep", "id", "--batch-size", "64", "--tracking-uri", store["uri"]])
    assert code == 0, stderr[-3000:]
    by_cli = pd.read_csv(output, dtype={"prediction": str})
    assert list(by_cli.columns) == ["id", "prediction", "probability_0", "probability_1"]
    assert (by_cli["id"] == raw["id"]).all()
    assert (by_cli["prediction"].to_numpy() == by_mlflow["prediction"].to_numpy()).all()
    np.testing.assert_allclose(by_cli["probability_1"], by_mlflow["probability_1"], rtol=0, atol=1e-12)

    # from the checkpoint instead of the store: the same answers
    [checkpoint] = (store["outputs"] / "checkpoints").glob("best-*.ckpt")
    from_checkpoint = folder / "from_checkpoint.parquet"
    code, _, stderr = predict_cli([str(checkpoint), "--input", str(people_run["test"]), "--output", str(from_checkpoint)])
    assert code == 0, stderr[-3000:]
    again = pd.read_parquet(from_checkpoint)
    assert (again["prediction"].to_numpy() == by_mlflow["prediction"].to_numpy()).all()
    np.testing.assert_allclose(again["probability_1"], by_mlflow["probability_1"], atol=1e-6)
    # a copy of the checkpoint cut short: said to be unreadable (it was "not a checkpoint of this run's model")
    cut = checkpoint.parent / "cut.ckpt"
    cut.write_bytes(checkpoint.read_bytes()[:5000])
    try:
        code, _, stderr = predict_cli([str(cut), "--input", str(people_run["test"]), "--output", str(folder / "no.csv")])
    finally:
        cut.unlink()
    assert code == 2 and error_line(stderr).startswith(f"Error: {cut}: not a readable PyTorch checkpoint ("), stderr
    # an intact file that holds an object (what weights_only refuses): called unsafe, not cut short
    import torch

    unsafe = checkpoint.parent / "unsafe.ckpt"
    torch.save({**torch.load(checkpoint, weights_only=True), "where": Path("/tmp")}, unsafe)
    try:
        code, _, stderr = predict_cli([str(unsafe), "--input", str(people_run["test"]), "--output", str(folder / "no.csv")])
    finally:
        unsafe.unlink()
    assert code == 2 and "refused, the file holds more than tensors and plain values" in error_line(stderr), stderr
    # a file torch.save never wrote (the run's config.yaml): called so (it was "not a readable PyTorch checkpoint
    # (pop from empty list); a file cut short ... cannot be read")
    config = store["outputs"] / "config.yaml"
    code, _, stderr = predict_cli([str(config), "--input", str(people_run["test"]), "--output", str(folder / "no.csv")])
    assert code == 2 and error_line(stderr).startswith(
        f"Error: {config}: not a PyTorch checkpoint (not a file torch.save or Lightning writes)"), stderr


def test_a_downloaded_model_folder_and_a_bare_runs_uri_predict_as_the_run_id(people_run):
    """A logged model's folder, downloaded as MLflow does it, was 'neither a checkpoint file nor an MLflow run id',
    and runs:/<id> (without /model) was 'Not a proper runs:/ URI: runs:/.'."""
    import mlflow
    import mlflow.artifacts

    store, run, folder = people_run["store"], people_run["run"], people_run["folder"]
    mlflow.set_tracking_uri(store["uri"])
    try:
        downloaded = Path(mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/model",
                                                              dst_path=str(folder / "dl")))
    finally:
        mlflow.set_tracking_uri(None)
    answers = []
    for source in (run.info.run_id, str(downloaded), f"runs:/{run.info.run_id}"):
        output = folder / f"by_{len(answers)}.csv"
        code, _, stderr = predict_cli([source, "--input", str(people_run["test"]), "--output", str(output),
                                       "--tracking-uri", store["uri"]])
        assert code == 0, (source, stderr[-3000:])
        answers.append(pd.read_csv(output))
    pd.testing.assert_frame_equal(answers[0], answers[1])
    pd.testing.assert_frame_equal(answers[0], answers[2])
    code, _, stderr = predict_cli([str(folder), "--input", str(people_run["test"]), "--output", str(folder / "no.csv")])
    assert code == 2 and "models:/<name>/<version>" in stderr and "MLmodel" in stderr, stderr[-2000:]


def test_kept_columns_are_copied_as_written_and_never_clash_with_the_answers(people_run):
    """An id written 000123 used to come out as 123, and one written NA or ? as an empty cell; a kept column named
    like an output column gave a file with two 'prediction' columns (CSV) or a traceback (Parquet, JSON lines)."""
    store, run, folder = people_run["store"], people_run["run"], people_run["folder"]
    raw = pd.read_csv(people_run["test"], dtype=str)
    raw["id"] = [f"{i:06d}" for i in range(len(raw))]
    raw.loc[2:5, "id"] = ["NA", "None", "?", "n/a"]  # codes, not missing values: 'NA' is Namibia's
    raw["prediction"] = "given"
    table = folder / "with_codes.csv"
    raw.to_csv(table, index=False)
    common = [run.info.run_id, "--input", str(table), "--tracking-uri", store["uri"]]
    for suffix in ("csv", "parquet", "jsonl"):
        output = folder / f"clash.{suffix}"
        code, _, stderr = predict_cli([*common, "--output", str(output), "--keep", "prediction"])
        assert code == 2 and error_line(stderr) == ("Error: --keep prediction: the output has a column 'prediction' of "
                                                    "its own; keep it under another name: --rename prediction=<name> "
                                                    "--keep <name>"), stderr[-2000:]
        assert not output.exists()
    output = folder / "kept.parquet"
    code, _, stderr = predict_cli([*common, "--output", str(output), "--keep", "id", "--keep", "id,given",
                                   "--rename", "prediction=given"])
    assert code == 0, stderr[-3000:]
    kept = pd.read_parquet(output)
    assert list(kept.columns) == ["id", "given", "prediction", "probability_0", "probability_1"]
    assert kept["id"].tolist() == raw["id"].tolist() and kept["id"].iloc[1] == "000001" and kept["id"].iloc[2] == "NA"
    assert set(kept["given"]) == {"given"}


def test_predictions_never_overwrite_the_input_file(people_run):
    """--output naming the --input file replaced the user's rows with predictions, without a word."""
    store, run, folder = people_run["store"], people_run["run"], people_run["folder"]
    mine = folder / "mine.csv"
    mine.write_bytes(people_run["test"].read_bytes())
    link = folder / "mine_link.csv"
    link.symlink_to(mine)
    for output in (mine, folder / "." / "mine.csv", link):
        code, _, stderr = predict_cli([run.info.run_id, "--input", str(mine), "--output", str(output),
                                       "--tracking-uri", store["uri"]])
        assert code == 2 and error_line(stderr) == (f"Error: --output {output} is the --input file; the predictions "
                                                    "would overwrite it: write them to another file"), stderr[-2000:]
        assert mine.read_bytes() == people_run["test"].read_bytes()


def test_a_header_only_file_gets_a_header_only_output_and_an_empty_file_is_still_refused(people_run):
    """A batch job's day without rows: pipeline-predict refused a file of a header alone (exit 2) while
    mlflow.pyfunc answers an empty frame; now its output is the header it would have had, --keep columns too."""
    store, run, folder = people_run["store"], people_run["run"], people_run["folder"]
    header_only = folder / "no_rows.csv"
    header_only.write_text(people_run["test"].read_text().splitlines()[0] + "\n")
    output = folder / "no_rows_predictions.csv"
    code, stdout, stderr = predict_cli([run.info.run_id, "--input", str(header_only), "--output", str(output),
                                        "--keep", "id", "--tracking-uri", store["uri"]])
    assert code == 0, stderr[-3000:]
    assert stdout.strip() == f"Note: --input {header_only} has no data rows; {output} holds the header only"
    assert output.read_text() == "id,prediction,probability_0,probability_1\n"
    by_mlflow = load_pyfunc(store, run.info.run_id).predict(pd.read_csv(header_only))
    assert list(by_mlflow.columns) == ["prediction", "probability_0", "probability_1"] and len(by_mlflow) == 0
    empty = folder / "empty.csv"
    empty.write_text("")
    code, _, stderr = predict_cli([run.info.run_id, "--input", str(empty), "--output", str(folder / "none.csv"),
                                   "--tracking-uri", store["uri"]])
    assert code == 2 and "the file is empty" in error_line(stderr), stderr[-2000:]
    assert not (folder / "none.csv").exists()


def test_predict_options_are_named_as_given_and_the_keep_advice_works_for_a_column_the_model_reads(store):
    """--format xls was called data.format='xls'; --rename of a column the model reads listed the new name as a column
    of the file; following "--rename prediction=<name> --keep <name>" for an input column the model reads failed, as
    --rename took that column from the model."""
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"city": rng.choice(["Oslo", "Rome", "Lima"], 120), "prediction": np.round(rng.normal(size=120), 3)})
    rows["label"] = np.where(rows["prediction"] + (rows["city"] == "Rome") > 0.5, "yes", "no")
    train = store["tmp"] / "forecasts.csv"
    rows.to_csv(train, index=False)
    result = run_cli_in_process(["data=csv", f"data.path={train}", "data.target=label", "trainer.max_epochs=1",
                                 "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    [checkpoint] = store["tmp"].glob("outputs*/checkpoints/best-*.ckpt")
    output = store["tmp"] / "predictions.csv"
    common = [str(checkpoint), "--input", str(train), "--output", str(output)]
    code, _, stderr = predict_cli([*common, "--format", "xls"])
    assert code == 2 and error_line(stderr).startswith("Error: --format xls is not a table format; choose one of csv,")
    code, _, stderr = predict_cli([*common, "--sheet", "Data"])
    assert code == 2 and error_line(stderr).startswith("Error: --sheet chooses a sheet of an Excel workbook (.xlsx);")
    assert error_line(stderr).endswith("leave --sheet out"), stderr[-2000:]
    code, _, stderr = predict_cli([*common, "--rename", "city=town"])
    assert code == 2 and error_line(stderr) == (
        f"Error: --rename city=town: the model reads 'city', and {train} (after --rename) has 'town' in its place; "
        "--rename COLUMN=NAME reads the file's COLUMN as the model's NAME: leave city out of it (or add --keep town to "
        "copy 'city' into the output as 'town')"), stderr[-2000:]
    code, _, stderr = predict_cli(common)
    assert code == 0, stderr[-2000:]
    plain = pd.read_csv(output)
    code, _, stderr = predict_cli([*common, "--keep", "prediction"])
    advice = error_line(stderr).split("keep it under another name: ", 1)[1]
    assert code == 2 and advice == "--rename prediction=<name> --keep <name>", stderr[-2000:]
    code, _, stderr = predict_cli([*common, *advice.replace("<name>", "given").split()])
    assert code == 0, stderr[-2000:]
    kept = pd.read_csv(output)
    assert list(kept.columns) == ["given", *plain.columns] and kept["given"].tolist() == rows["prediction"].tolist()
    pd.testing.assert_frame_equal(kept[plain.columns], plain)
    code, _, stderr = predict_cli([*common, "--rename", "city=town", "--keep", "town"])
    assert code == 0 and pd.read_csv(output)["town"].tolist() == rows["city"].tolist(), stderr[-2000:]


BLOCKED_PIPELINE = """
import sys, importlib.abc
class NoPipeline(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "pipeline" or name.startswith("pipeline."):
            raise ImportError("the pipeline package is blocked in this process")
sys.meta_path.insert(0, NoPipeline())
import mlflow, pandas as pd
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model(f"runs:/{sys.argv[2]}/model")
model.predict(pd.read_csv(sys.argv[3])).to_csv(sys.argv[4], index=False)
assert not [m for m in sys.modules if m == "pipeline" or m.startswith("pipeline.")]
"""


def test_a_number_too_large_for_float32_is_named_as_written(people_run):
    """``score=inf`` was said as ``holds np.float64(inf)``: numpy's repr, not the number."""
    store, run, folder = people_run["store"], people_run["run"], people_run["folder"]
    for cell, said in (("inf", "inf"), ("-1e39", "-1e+39")):
        given = folder / "too_large.csv"
        given.write_text(f"score,colour,member,visits,noise\n{cell},red,true,1,0.5\n")
        code, _, stderr = predict_cli([run.info.run_id, "--input", str(given), "--output", str(folder / "never.csv"),
                                       "--tracking-uri", store["uri"]])
        assert code == 2, stderr[-3000:]
        assert error_line(stderr).startswith(f"Error: {given}: column 'score' holds {said} at index 0, more than "
                                             "float32 can hold"), stderr[-3000:]


def test_the_logged_model_loads_without_the_pipeline_package(people_run):
    import subprocess
    import sys

    store, run, folder = people_run["store"], people_run["run"], people_run["folder"]
    output = folder / "without_pipeline.csv"
    result = subprocess.run([sys.executable, "-c", BLOCKED_PIPELINE, store["uri"], run.info.run_id,
                             str(people_run["test"]), str(output)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = load_pyfunc(store, run.info.run_id).predict(pd.read_csv(people_run["test"]))
    assert (pd.read_csv(output, dtype={"prediction": str})["prediction"] == expected["prediction"]).all()


def test_pipeline_predict_threshold_moves_a_binary_models_cut_off_only(people_run):
    store, run, folder = people_run["store"], people_run["run"], people_run["folder"]
    answers = {}
    for threshold in (None, 0.2, 0.8):
        output = folder / f"threshold_{threshold}.csv"
        code, _, stderr = predict_cli([run.info.run_id, "--input", str(people_run["test"]), "--output", str(output),
                                       "--tracking-uri", store["uri"],
                                       *(["--threshold", str(threshold)] if threshold else [])])
        assert code == 0, stderr[-2000:]
        answers[threshold] = pd.read_csv(output, dtype={"prediction": str})
    plain = answers[None]
    for threshold in (0.2, 0.8):
        moved = answers[threshold]
        assert moved["probability_1"].equals(plain["probability_1"])  # the probabilities stay
        assert (moved["prediction"] == np.where(plain["probability_1"] >= threshold, "1", "0")).all()
    assert (answers[0.2]["prediction"] == "1").sum() > (plain["prediction"] == "1").sum() > \
        (answers[0.8]["prediction"] == "1").sum()


def test_new_rows_in_any_order_with_unseen_categories_and_a_missing_column(people_run):
    store, run, folder = people_run["store"], people_run["run"], people_run["folder"]
    model = load_pyfunc(store, run.info.run_id)
    new = pd.DataFrame({"extra": ["ignored", "too"], "noise": [None, "0.5"], "visits": [9, 1],
                        "member": ["TRUE", None], "colour": ["purple", "red"], "score": [2.0, "-0.1"]})
    predicted = model.predict(new)
    assert len(predicted) == 2 and set(predicted["prediction"]) <= {"0", "1"}
    assert np.isfinite(predicted[["probability_0", "probability_1"]].to_numpy()).all()
    assert predicted["prediction"].iloc[0] == "1"  # score 2.0 decides, whatever the unseen colour

    without_colour = folder / "no_colour.csv"
    new.drop(columns=["colour"]).to_csv(without_colour, index=False)
    code, _, stderr = predict_cli([run.info.run_id, "--input", str(without_colour), "--output",
                                   str(folder / "never.csv"), "--tracking-uri", store["uri"]])
    assert code == 2 and "no column 'colour'" in error_line(stderr)
    assert "--rename COLUMN=colour" in error_line(stderr) and "add it: empty cells" in error_line(stderr)
    assert not (folder / "never.csv").exists()
    # a new export that names the column otherwise: --rename reads it under the model's name
    renamed, output = folder / "color.csv", folder / "renamed_predictions.csv"
    new.rename(columns={"colour": "color"}).to_csv(renamed, index=False)
    code, _, stderr = predict_cli([run.info.run_id, "--input", str(renamed), "--output", str(output),
                                   "--rename", "color=colour", "--keep", "color", "--tracking-uri", store["uri"]])
    assert code == 0, stderr[-2000:]
    answered = pd.read_csv(output, dtype={"prediction": str})
    assert answered["colour"].tolist() == ["purple", "red"]  # kept, under the model's name
    assert answered["prediction"].tolist() == predicted["prediction"].tolist()
    assert answered["probability_1"].to_numpy() == pytest.approx(predicted["probability_1"].to_numpy(), abs=1e-6)
    for rename, says in (("colr=colour", "'colr' is not a column of"), ("color=score", "has a column 'score' already")):
        code, _, stderr = predict_cli([run.info.run_id, "--input", str(renamed), "--output", str(folder / "never.csv"),
                                       "--rename", rename, "--tracking-uri", store["uri"]])
        assert code == 2 and says in error_line(stderr), stderr[-2000:]
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="colour"):
        model.predict(new.drop(columns=["colour"]))
    # a folder (images) or a .txt file (texts) is not what a table's model reads: one line each
    (folder / "texts.txt").write_text("a text\n")
    for given, says in ((folder, "is a folder; this model reads the columns"),
                        (folder / "texts.txt", "a .txt file is read as one text per line")):
        code, _, stderr = predict_cli([run.info.run_id, "--input", str(given), "--output", str(folder / "never.csv"),
                                       "--tracking-uri", store["uri"]])
        assert code == 2 and says in error_line(stderr), stderr[-2000:]
    assert not (folder / "never.csv").exists()


def test_an_unseen_category_in_a_column_whose_every_training_value_is_frequent_moves_no_prediction(store):
    """The unseen/missing code 0 of a column where no training row is missing or rare was never trained: its
    embedding stayed at its random start, and a category new at prediction time, in a column that carries no
    signal, moved the answers by chance (accuracy 0.98 -> 0.86). It now reads the mean of the column's learned
    vectors: the model answers as it does on the known categories, by pipeline-predict, from the checkpoint and
    by the logged model alike."""
    rng = np.random.default_rng(3)

    def rows(count: int) -> pd.DataFrame:
        x = rng.normal(size=count)
        return pd.DataFrame({"x": np.round(x, 4), "shade": rng.choice(["dark", "light", "pale"], size=count),
                             "y": np.where(x > 0, "yes", "no")})

    train, new = store["tmp"] / "shades.csv", rows(400)
    rows(600).to_csv(train, index=False)
    result = run_cli(["task=classification", "data=csv", f"data.path={train}", "data.target=y",
                      "trainer.max_epochs=15", "optimizer.lr=0.02", *SHORT_RUN], store)
    run = finished_run(store, result)
    answers = {}
    for case, shade in (("known", new["shade"]), ("unseen", "mauve"), ("missing", "")):
        given = store["tmp"] / f"{case}.csv"
        new.assign(shade=shade).drop(columns="y").to_csv(given, index=False)
        code, _, stderr = predict_cli([run.info.run_id, "--input", str(given), "--output",
                                       str(store["tmp"] / f"{case}_answers.csv"), "--tracking-uri", store["uri"]])
        assert code == 0, stderr[-3000:]
        answers[case] = pd.read_csv(store["tmp"] / f"{case}_answers.csv")
        warned = [line for line in stderr.splitlines() if line.startswith("Warning: column 'shade'")]
        assert warned == {"known": [], "missing": [  # a column left empty is said to be, as a column of new values is
            "Warning: column 'shade': 400 of its 400 cells are missing; the model reads them as one unseen/missing "
            "category"], "unseen": [  # said once, when most of a column's values are new
            "Warning: column 'shade': 400 of its 400 values are categories the model's training rows did not have "
            "(e.g. 'mauve'); it reads them as one unseen category"]}[case], stderr[-3000:]
    accuracy = {case: float((a["prediction"] == new["y"]).mean()) for case, a in answers.items()}
    assert accuracy["known"] > 0.95, accuracy
    assert accuracy["unseen"] >= accuracy["known"] - 0.02 and accuracy["missing"] >= accuracy["known"] - 0.02, accuracy
    # an unseen category and a missing value share code 0: one answer
    np.testing.assert_allclose(answers["unseen"]["probability_yes"], answers["missing"]["probability_yes"], atol=1e-6)
    # the logged model and the checkpoint build the same embedding of code 0
    by_mlflow = load_pyfunc(store, run.info.run_id).predict(new.assign(shade="mauve").drop(columns="y"))
    np.testing.assert_allclose(by_mlflow["probability_yes"], answers["unseen"]["probability_yes"], atol=1e-6)
    [checkpoint] = (store["outputs"] / "checkpoints").glob("best-*.ckpt")
    code, _, stderr = predict_cli([str(checkpoint), "--input", str(store["tmp"] / "unseen.csv"), "--output",
                                   str(store["tmp"] / "from_checkpoint.csv")])
    assert code == 0, stderr[-3000:]
    np.testing.assert_allclose(pd.read_csv(store["tmp"] / "from_checkpoint.csv")["probability_yes"],
                               answers["unseen"]["probability_yes"], atol=1e-6)


def test_pipeline_eval_on_a_new_test_file_reads_it_as_the_model_was_trained(tmp_path, migrated_store_db, monkeypatch):
    """A run that drew its test rows from its file, evaluated again on a test file of its own: the rows are made
    into inputs by the run's fitted preprocessing (not one fitted again on the rows the new split leaves for
    training), so pipeline-eval's metrics are those of the model's own predictions on that file."""
    from sklearn.metrics import log_loss

    store = new_store(tmp_path, migrated_store_db)
    train_csv = write_csv(people(500, seed=0), tmp_path / "people.csv")
    new_csv = write_csv(people(300, seed=2), tmp_path / "new.csv")
    run = finished_run(store, run_cli(["task=classification", "data=csv", f"data.path={train_csv}", "data.target=label",
                                       "trainer.max_epochs=8", "optimizer.lr=0.01", *SHORT_RUN], store))
    output = tmp_path / "predictions.csv"
    code, _, stderr = predict_cli([run.info.run_id, "--input", str(new_csv), "--output", str(output),
                                   "--tracking-uri", store["uri"]])
    assert code == 0, stderr[-2000:]
    predicted, truth = pd.read_csv(output, dtype={"prediction": str}), true_labels(new_csv)

    # the training file is not needed (nor read): the run's preprocessing makes the new rows its inputs
    train_csv.rename(tmp_path / "elsewhere.csv")
    code, stdout, stderr = eval_cli([run.info.run_id, f"data.test_path={new_csv}", "--tracking-uri", store["uri"],
                                     "--output-dir", str(tmp_path / "evaluation")])
    assert code == 0 and "Warning" not in stderr and "torch threads" not in stderr, stderr[-3000:]
    assert "Data: csv new.csv in memory: 0 train / 0 validation / 300 test rows" in stdout, stdout
    assert "its training data is not read" in stdout
    (tmp_path / "elsewhere.csv").rename(train_csv)
    [evaluation] = [r for r in runs_in(store) if r.data.tags.get("evaluation_of") == run.info.run_id]
    metrics = evaluation.data.metrics
    assert metrics["test/acc"] == pytest.approx(float((predicted["prediction"] == truth).mean()), abs=1e-6)
    assert metrics["test/loss"] == pytest.approx(log_loss(truth.astype(int), predicted["probability_1"]), abs=1e-5)

    # a label the model was not trained on is refused, naming it and the file's line
    unseen = people(20, seed=3)
    unseen.loc[4, "label"] = "7"
    code, _, stderr = eval_cli([run.info.run_id, f"data.test_path={write_csv(unseen, tmp_path / 'unseen.csv')}",
                                "--tracking-uri", store["uri"], "--output-dir", str(tmp_path / "refused")])
    assert code == 2 and "label '7' (1 row) in column 'label' is not a class the model was trained on ('0', '1')" in \
        error_line(stderr), stderr[-2000:]
    assert f"{tmp_path / 'unseen.csv'}:6" in error_line(stderr)
    assert not (tmp_path / "refused").exists()  # --output-dir named a folder the refused command made: not left
    # numbers written with a decimal comma: said so, not also "if it means missing add data.na_values=[...]" for
    # every cell of the column
    people(20, seed=4).to_csv(tmp_path / "comma.csv", decimal=",", index=False)
    code, _, stderr = eval_cli([run.info.run_id, f"data.test_path={tmp_path / 'comma.csv'}", "--tracking-uri",
                                store["uri"], "--output-dir", str(tmp_path / "comma")])
    assert code == 2 and "of it is written with a decimal comma; read them with 'data.decimal=\",\"'" in \
        error_line(stderr) and "na_values" not in error_line(stderr), stderr[-2000:]
    # without --output-dir, the outputs/<date>/<time>/ folder it named for itself is not left behind
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    code, _, stderr = eval_cli([run.info.run_id, f"data.test_path={tmp_path / 'unseen.csv'}", "--tracking-uri",
                                store["uri"]])
    assert code == 2 and "is not a class the model was trained on" in error_line(stderr), stderr[-2000:]
    assert not list((tmp_path / "work").rglob("*/*")), list((tmp_path / "work").rglob("*"))
    monkeypatch.undo()
    # other test rows drawn from the training file: tested, with a warning that they may be training rows; in a
    # process with another torch thread count than the run's, with a note that the metrics may differ in their last
    # digits
    with another_thread_count() as threads:
        code, _, stderr = eval_cli([run.info.run_id, "data.seed=5", "--tracking-uri", store["uri"],
                                    "--output-dir", str(tmp_path / "redrawn")])
    assert code == 0 and stderr.startswith("Warning: data.seed may draw other test rows than the source run's"), stderr
    assert f"Note: the run trained with {run.data.params['torch_threads']} torch threads and this process has " \
           f"{threads}" in stderr
    # the training file itself as the test file: evaluated, with a warning that its rows are training rows
    code, _, stderr = eval_cli([run.info.run_id, f"data.test_path={train_csv}", "--tracking-uri", store["uri"],
                                "--output-dir", str(tmp_path / "trained_on")])
    assert code == 0 and stderr.startswith(f"Warning: data.test_path={train_csv} is the data the model was trained "
                                           "on (data.path)"), stderr[-2000:]
    # the run's own test rows: tested without a warning; after the training file changed, they are other rows (some
    # of them maybe training rows), and that is said, as it is when this version draws the split otherwise
    code, _, stderr = eval_cli([run.info.run_id, "--tracking-uri", store["uri"], "--output-dir", str(tmp_path / "own")])
    assert code == 0 and "Warning" not in stderr, stderr[-2000:]
    own = [r for r in runs_in(store) if r.data.tags.get("evaluation_of") == run.info.run_id]
    assert any(r.data.metrics.get("test/acc") == run.data.metrics["test/acc"] for r in own), \
        ([r.data.metrics.get("test/acc") for r in own], run.data.metrics["test/acc"])
    write_csv(people(500, seed=7), train_csv)
    code, _, stderr = eval_cli([run.info.run_id, "--tracking-uri", store["uri"], "--output-dir", str(tmp_path / "moved")])
    assert code == 0 and "Warning: the test rows differ from the source run's (digest " in stderr and \
        "the files it read have changed since, or this version draws the split otherwise" in stderr, stderr[-2000:]
    [moved] = [r for r in runs_in(store) if r.data.tags.get("evaluation_of") == run.info.run_id
               and r.info.run_id not in {o.info.run_id for o in own}]
    assert moved.data.tags["data_differs_from_source"].startswith("testing rows: digest "), moved.data.tags
    assert not any("data_differs_from_source" in r.data.tags for r in own)


def test_pipeline_eval_refusing_an_unseen_label_names_no_folder_and_counts_its_rows(store, monkeypatch):
    """pipeline-eval printed "Evaluating ... into outputs/<date>/<time>" and then refused a label the model was not
    trained on, leaving no such folder; the label was named without its count. The folder is named once the
    evaluation is under way, and the refusal counts the label's rows."""
    import re

    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    train = store["tmp"] / "yes_no.csv"
    pd.DataFrame({"x": x, "y": np.where(x > 0, "yes", "no")}).to_csv(train, index=False)
    run = finished_run(store, run_cli(["task=classification", "data=csv", f"data.path={train}", "data.target=y",
                                       "trainer.max_epochs=2", *SHORT_RUN], store))
    unseen = store["tmp"] / "unseen.csv"
    labels = np.where(x[:20] > 0, "yes", "no").astype(object)
    labels[[3, 7, 11]] = "maybe"
    pd.DataFrame({"x": x[:20], "y": labels}).to_csv(unseen, index=False)
    (store["tmp"] / "work").mkdir()
    monkeypatch.chdir(store["tmp"] / "work")
    code, stdout, stderr = eval_cli([run.info.run_id, f"data.test_path={unseen}", "--tracking-uri", store["uri"]])
    line = error_line(stderr)
    assert code == 2 and f"{unseen}:5: label 'maybe' (3 rows) in column 'y' is not a class the model was trained on " \
        "('no', 'yes')" in line, line
    assert "Evaluating" not in stdout and "into" not in stdout, stdout
    assert not list((store["tmp"] / "work").rglob("*")), list((store["tmp"] / "work").rglob("*"))
    # a test file it can take: the folder named is there
    known = store["tmp"] / "known.csv"
    pd.DataFrame({"x": x[:20], "y": np.where(x[:20] > 0, "yes", "no")}).to_csv(known, index=False)
    code, stdout, stderr = eval_cli([run.info.run_id, f"data.test_path={known}", "--tracking-uri", store["uri"]])
    assert code == 0, stderr[-2000:]
    [named] = re.findall(r"^Evaluating .* into (.+)$", stdout, re.MULTILINE)
    assert (store["tmp"] / "work" / named).is_dir() or Path(named).is_dir(), (named, stdout)
    monkeypatch.undo()


# ----- regression on Parquet files -----------------------------------------------------------------------------
def houses(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rooms = rng.uniform(1, 8, size=rows)
    town = rng.choice(["north", "south", "east"], size=rows)
    price = 50_000 * rooms + np.where(town == "north", 80_000, 0) + rng.normal(0, 10_000, size=rows)
    rooms_cell = rooms.copy()
    rooms_cell[rng.random(rows) < 0.1] = np.nan
    return pd.DataFrame({"rooms": rooms_cell, "town": town, "price": price})


def test_parquet_regression_predicts_in_the_targets_units(tmp_path, migrated_store_db):
    store = new_store(tmp_path, migrated_store_db)
    houses(500, 0).to_parquet(tmp_path / "train.parquet")
    houses(200, 1).to_parquet(tmp_path / "test.parquet")
    result = run_cli(["task=regression", "data=csv", f"data.path={tmp_path / 'train.parquet'}",
                      f"data.test_path={tmp_path / 'test.parquet'}", "data.target=price", "trainer.max_epochs=30",
                      "optimizer.lr=0.01", "data.categorical_encoding=onehot", *SHORT_RUN], store)
    run = finished_run(store, result)
    assert run.data.metrics["test/r2"] > 0.8, run.data.metrics
    output = tmp_path / "predictions.jsonl"
    code, _, stderr = predict_cli([run.info.run_id, "--input", str(tmp_path / "test.parquet"), "--output", str(output),
                                   "--tracking-uri", store["uri"]])
    assert code == 0, stderr[-3000:]
    predicted = pd.read_json(output, lines=True)["prediction"].to_numpy()
    truth = pd.read_parquet(tmp_path / "test.parquet")["price"].to_numpy()
    rmse = math.sqrt(float(np.mean((predicted - truth) ** 2)))
    assert rmse == pytest.approx(run.data.metrics["test/rmse"], rel=1e-5)  # dollars, like the test metric
    # a colleague's continental export of new rows: refused, saying how the numbers are written
    pd.read_parquet(tmp_path / "test.parquet").to_csv(tmp_path / "comma.csv", sep=";", decimal=",", index=False)
    code, _, stderr = predict_cli([run.info.run_id, "--input", str(tmp_path / "comma.csv"), "--output", str(output),
                                   "--tracking-uri", store["uri"]])
    assert code == 2 and "not a number (written with a decimal comma; the model reads numbers as its training file " \
        "wrote them, with a decimal point" in error_line(stderr), stderr[-2000:]
    assert error_line(stderr).endswith("; --decimal , reads the file's numbers with ','"), stderr[-2000:]
    code, _, stderr = predict_cli([run.info.run_id, "--input", str(tmp_path / "comma.csv"), "--output",
                                   str(tmp_path / "comma.jsonl"), "--decimal", ",", "--tracking-uri", store["uri"]])
    assert code == 0, stderr[-2000:]
    assert pd.read_json(tmp_path / "comma.jsonl", lines=True)["prediction"].to_numpy() == pytest.approx(predicted,
                                                                                                       rel=1e-6)


def test_a_parquet_files_decimal_and_duration_columns_are_numbers(tmp_path, migrated_store_db):
    """A database export's NUMERIC(12,2) column (Decimal cells) made the run fail after training, while logging the
    model (exit 1, and pipeline-eval failed the same way); a duration column was left out as identifier-like. Both
    are numbers now (durations in seconds), and the logged model reads the same file's rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from decimal import Decimal

    store = new_store(tmp_path, migrated_store_db)
    frame = houses(400, 0)
    minutes = np.random.default_rng(0).integers(0, 1000, len(frame))
    table = pa.Table.from_pandas(frame.drop(columns="price"), preserve_index=False)
    table = table.append_column("wait", pa.array(minutes * 60_000_000_000, type=pa.duration("ns")))
    table = table.append_column("tax", pa.array([Decimal(f"{p / 100:.2f}") for p in frame["price"]],
                                                type=pa.decimal128(12, 2)))
    table = table.append_column("price", pa.array([Decimal(f"{p:.2f}") for p in frame["price"]],
                                                  type=pa.decimal128(12, 2)))
    pq.write_table(table, tmp_path / "houses.parquet")
    result = run_cli(["task=regression", "data=csv", f"data.path={tmp_path / 'houses.parquet'}", "data.target=price",
                      "trainer.max_epochs=3", *SHORT_RUN], store)
    run = finished_run(store, result)
    assert "read the durations of column 'wait' as seconds" in result.stdout + result.stderr
    assert "left out" not in result.stdout + result.stderr
    model = load_pyfunc(store, run.info.run_id)
    assert {"wait", "tax"} <= set(model.metadata.get_input_schema().input_names())
    rows = pd.read_parquet(tmp_path / "houses.parquet").head(20)
    predicted = model.predict(rows)
    assert np.isfinite(np.asarray(predicted, dtype=float)).all()


def test_large_targets_that_vary_little_keep_their_digits_in_predictions_and_metrics(store):
    """Targets near 1e9 that vary by ~100: in float32 they were multiples of 64, so the 300 test predictions took 9
    values, predictions/test.csv's targets were off the file's by up to 60 and test/rmse was computed against them
    (16.9 where the predictions' own error was 18.7)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1500, 3))
    frame = pd.DataFrame(x, columns=["x0", "x1", "x2"]).assign(y=1e9 + 100 * x[:, 0] + rng.normal(size=1500))
    train, test = store["tmp"] / "train.csv", store["tmp"] / "test.csv"
    frame.iloc[:1200].to_csv(train, index=False)
    frame.iloc[1200:].to_csv(test, index=False)
    result = run_cli(["task=regression", "data=csv", f"data.path={train}", f"data.test_path={test}", "data.target=y",
                      "trainer.max_epochs=10", *SHORT_RUN], store)
    run = finished_run(store, result)
    truth = pd.read_csv(test)["y"].to_numpy()
    tested = pd.read_csv(store["outputs"] / "predictions" / "test.csv")
    assert np.abs(tested["target"].to_numpy() - truth).max() < 1e-6  # the file's values, every digit
    output = store["tmp"] / "predicted.csv"
    code, _, stderr = predict_cli([run.info.run_id, "--input", str(test), "--output", str(output),
                                   "--tracking-uri", store["uri"]])
    assert code == 0, stderr[-3000:]
    predicted = pd.read_csv(output)["prediction"].to_numpy()
    assert len(np.unique(predicted)) == len(truth)
    # the logged model = the run's test pass, to the model's own float32 precision: its standardised outputs (~1)
    # may differ in their last bit where torch sums in another order (two threads, other batch sizes: 1.2e-5 after
    # scaling by the target's spread of ~100), far below the 64 that targets held in float32 were rounded to
    assert np.abs(predicted - tested["prediction"].to_numpy()).max() < 1e-3
    error = predicted - truth
    assert math.sqrt(float(np.mean(error ** 2))) == pytest.approx(run.data.metrics["test/rmse"], rel=1e-6)
    assert float(np.mean(np.abs(error))) == pytest.approx(run.data.metrics["test/mae"], rel=1e-6)
    assert run.data.metrics["test/r2"] > 0.99, run.data.metrics


def test_predictions_name_each_test_rows_place_in_its_file(store):
    """predictions/test.csv's ``row`` is the row's place in the test split; a table's rows also get ``file_row``, their
    row in the file as pandas reads it, so that they can be joined with the file's other columns. Rows without a
    target are left out of the splits, so split positions and file rows differ."""
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"x": np.round(rng.normal(size=400), 6), "tag": [f"r{i}" for i in range(400)]})
    frame["y"] = (2 * frame["x"] + rng.normal(scale=0.1, size=400)).round(6)
    frame.loc[rng.random(400) < 0.2, "y"] = np.nan  # rows without a target: not in any split
    path = store["tmp"] / "rows.csv"
    frame.to_csv(path, index=False)
    result = run_cli(["task=regression", "data=csv", f"data.path={path}", "data.target=y", "data.drop=[tag]",
                      "trainer.max_epochs=2", *SHORT_RUN], store)
    finished_run(store, result)
    tested = pd.read_csv(store["outputs"] / "predictions" / "test.csv")
    assert list(tested.columns[:2]) == ["row", "file_row"], list(tested.columns)
    assert tested["row"].tolist() == list(range(len(tested)))
    read = pd.read_csv(path).iloc[tested["file_row"].to_numpy()]
    assert np.allclose(read["y"].to_numpy(), tested["target"].to_numpy())  # the file's row of each prediction
    assert read["y"].notna().all() and tested["file_row"].is_unique
    assert (tested["file_row"].to_numpy() != tested["row"].to_numpy()).any()


def test_predictions_of_a_bundled_data_set_name_each_test_rows_place_in_it_under_limit_rows(store):
    """A bundled data set's predictions/test.csv had only ``row``, the place in the test split that data.limit_rows
    and the hold-out draw: its rows could not be joined with the data set. ``data_row`` is each row's place in the
    arrays its loader gives, as ``file_row`` is a table file's row."""
    from sklearn.datasets import load_diabetes

    result = run_cli(["task=regression", "data=diabetes", "data.limit_rows=200", "trainer.max_epochs=1", *SHORT_RUN],
                     store)
    finished_run(store, result)
    tested = pd.read_csv(store["outputs"] / "predictions" / "test.csv")
    assert list(tested.columns[:3]) == ["row", "data_row", "target"], list(tested.columns)
    assert tested["row"].tolist() == list(range(len(tested)))
    assert tested["data_row"].is_unique and tested["data_row"].max() >= 200  # the data set's 442 rows, not the 200
    assert np.allclose(load_diabetes().target[tested["data_row"].to_numpy()], tested["target"].to_numpy())


def written_houses(rows: int, seed: int) -> pd.DataFrame:
    """:func:`houses` as a report writes it: the price in dollars with thousands separators, the area with
    thousands separators (some cells empty), a tax rate in percent, the day of the listing as an ISO date."""
    frame = houses(rows, seed)
    area = [f"{v * 1000:,.0f}" if v == v else "" for v in frame["rooms"]]
    listed = pd.Timestamp("2023-01-01") + pd.to_timedelta(np.random.default_rng(seed).integers(0, 700, rows), unit="D")
    return pd.DataFrame({"area": area, "tax": [f"{1 + i % 7 * 0.25:.2f}%" for i in range(rows)], "town": frame["town"],
                         "listed": listed.strftime("%Y-%m-%d"), "price": [f"${v:,.2f}" for v in frame["price"]]})


def test_numbers_written_with_currency_thousands_and_percent_signs_and_iso_dates_are_numbers(store):
    train, test = store["tmp"] / "train.csv", store["tmp"] / "test.csv"
    written_houses(500, 0).to_csv(train, index=False)
    written_houses(200, 1).to_csv(test, index=False)
    assert '"$' in train.read_text() and "%" in train.read_text()  # quoted cells with commas: as exports write them
    result = run_cli_in_process(["task=regression", "data=csv", f"data.path={train}", f"data.test_path={test}",
                                 "data.target=price", "trainer.max_epochs=30", "optimizer.lr=0.01", "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "read as numbers (written with a currency sign, thousands separators or '%'; ISO dates as days since " \
        "1970-01-01)" in output, output[-3000:]
    assert "'area' ('" in output and "'tax' ('1.00%' -> 0.01)" in output, output[-3000:]
    assert re.search(r"'price', the target \('\$[\d,]+\.\d\d' -> [\d.]+\)", output), output[-3000:]  # as documented
    day, days = re.search(r"'listed' \('(\d{4}-\d\d-\d\d)' -> (\d+)\)", output).groups()
    assert int(days) == (pd.Timestamp(day) - pd.Timestamp("1970-01-01")).days
    metrics = dict(re.findall(r"test/(\w+)=([-\d.e]+)", output))
    assert float(metrics["r2"]) > 0.8, metrics  # the area is what the price follows: it was read, as a number

    [checkpoint] = (store["outputs"] / "checkpoints").glob("best-*.ckpt")
    predictions = store["tmp"] / "predictions.csv"
    code, _, stderr = predict_cli([str(checkpoint), "--input", str(test), "--output", str(predictions)])
    assert code == 0, stderr[-3000:]
    truth = pd.read_csv(test)["price"].str.replace("[$,]", "", regex=True).astype(float).to_numpy()
    predicted = pd.read_csv(predictions)["prediction"].to_numpy()
    rmse = math.sqrt(float(np.mean((predicted - truth) ** 2)))
    assert rmse == pytest.approx(float(metrics["rmse"]), rel=1e-3)  # dollars, from the raw written rows


def european_houses(rows: int, seed: int, english: bool = False) -> pd.DataFrame:
    """:func:`houses` as a continental European export writes it, for a ';'-separated file: decimal commas,
    '.' between thousands (an area of ``3.456`` m² is three thousand and more), percent and euro signs; with
    ``english``, the same numbers written with a decimal point and ',' between thousands."""
    def european(value: float, decimals: int) -> str:
        written = f"{value:,.{decimals}f}"
        return written if english else written.translate(str.maketrans({",": ".", ".": ","}))

    frame = houses(rows, seed)
    area = [european(v * 1000, 0) if v == v else "" for v in frame["rooms"]]
    return pd.DataFrame({"fläche": area, "zins": [f"{european(1 + i % 7 * 0.25, 2)} %" for i in range(rows)],
                         "ort": frame["town"], "preis": [f"{european(v, 2)} €" for v in frame["price"]]})


def test_numbers_written_with_decimal_commas_are_refused_then_read_with_data_decimal(store):
    train, test = store["tmp"] / "train.csv", store["tmp"] / "test.csv"
    european_houses(500, 0).to_csv(train, index=False, sep=";")
    european_houses(200, 1).to_csv(test, index=False, sep=";")
    assert ";1,75 %;" in train.read_text() and " €" in train.read_text()
    # read as written in English, '3.456' would be three and a half square metres: refused, naming the key
    refused = run_cli_in_process(["task=regression", "data=csv", f"data.path={train}", "data.target=preis",
                                  'data.sep=";"'], store)
    assert_refused(refused, store, f"{train}:2", "column 'zins' holds", "decimal comma", """'data.decimal=","'""")
    result = run_cli_in_process(["task=regression", "data=csv", f"data.path={train}", f"data.test_path={test}",
                                 "data.target=preis", 'data.sep=";"', 'data.decimal=","', "trainer.max_epochs=30",
                                 "optimizer.lr=0.01", "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "'zins' ('1,00 %' -> 0.01)" in output, output[-3000:]
    metrics = dict(re.findall(r"test/(\w+)=([-\d.e]+)", output))
    assert float(metrics["r2"]) > 0.8, metrics  # the area, read in thousands, is what the price follows
    # a file whose target is written with a point among columns written with commas: the hint for the target said
    # 'data.decimal="."', which the other columns' hint had just turned round (one mark is read per file)
    mixed = european_houses(50, 0)
    mixed["preis"] = [f"{price:.1f}" for price in houses(50, 0)["price"]]
    mixed.to_csv(store["tmp"] / "mixed.csv", index=False, sep=";")
    refused = run_cli_in_process(["task=regression", "data=csv", f"data.path={store['tmp'] / 'mixed.csv'}",
                                  "data.target=preis", 'data.sep=";"', 'data.decimal=","'], store)
    assert_refused(refused, store, "column 'preis' holds", "while data.decimal=',' reads every number of the file "
                   "with a comma", "one mark per file")

    [checkpoint] = store["tmp"].glob("outputs*/checkpoints/best-*.ckpt")  # the refused run kept outputs/ itself
    assert json.loads((checkpoint.parent.parent / "data" / "preprocessing.json").read_text())["decimal"] == ","
    predictions = store["tmp"] / "predictions.csv"
    code, _, stderr = predict_cli([str(checkpoint), "--input", str(test), "--output", str(predictions)])
    assert code == 0, stderr[-3000:]  # no --sep: the ';' is found as in training
    truth = houses(200, 1)["price"].to_numpy()
    continental = pd.read_csv(predictions)["prediction"].to_numpy()
    rmse = math.sqrt(float(np.mean((continental - truth) ** 2)))
    assert rmse == pytest.approx(float(metrics["rmse"]), rel=1e-3)  # euros, from the rows as written
    lines = test.read_text().splitlines(keepends=True)
    lines[3] = lines[3].rsplit(";", 1)[0] + "\n"  # a short row: no separator splits every row alike
    broken = store["tmp"] / "broken.csv"
    broken.write_text("".join(lines))
    code, _, stderr = predict_cli([str(checkpoint), "--input", str(broken), "--output", str(predictions)])
    assert code == 2 and "looks ';'-separated; set --sep ';'" in stderr, stderr[-2000:]
    # the same rows written in English ('1.75 %', '3,456' m², '123,456.78 €'): refused as the model
    # reads them, naming --decimal; read with --decimal . they get the continental file's predictions
    english = store["tmp"] / "english.csv"
    european_houses(200, 1, english=True).to_csv(english, index=False, sep=";")
    assert ";1.75 %;" in english.read_text()
    code, _, stderr = predict_cli([str(checkpoint), "--input", str(english), "--output", str(predictions)])
    assert code == 2 and "--decimal . reads the file's numbers with '.'" in error_line(stderr), stderr[-2000:]
    code, _, stderr = predict_cli([str(checkpoint), "--input", str(english), "--output", str(predictions),
                                   "--decimal", "."])
    assert code == 0, stderr[-2000:]
    assert pd.read_csv(predictions)["prediction"].to_numpy() == pytest.approx(continental, rel=1e-6)


def test_decimal_commas_before_three_digits_are_not_thousands_when_the_number_starts_with_0(store):
    """'0,346' was read as 346 (a comma before three digits taken for a thousands separator): a ';' export of
    values between -1 and 1 with three decimals trained on numbers 1000 times too large, without a word. No number
    written with thousands separators starts with 0: it is refused with the decimal-comma hint, as '0,34' is."""
    from pipeline.data.preprocessing import cell_number, to_numbers

    assert cell_number("1,500") == 1500 and cell_number("-12,345.5") == -12345.5
    assert math.isnan(cell_number("0,346")) and math.isnan(cell_number("-0,593")) and math.isnan(cell_number("012,345"))
    assert cell_number("0.346", decimal=",") != cell_number("0.346", decimal=",")  # NaN: '.' is then a thousands mark
    many = pd.Series([f"0,{i:03d}" for i in range(100, 200)])  # enough distinct texts for the bulk reader
    assert np.isnan(to_numbers(many, frozenset(), ".")[0]).all()
    rng = np.random.default_rng(0)
    values = rng.uniform(-0.99, 0.99, size=(80, 2))
    path = store["tmp"] / "small.csv"
    path.write_text("a;b;y\n" + "".join(f"{a:.3f};{b:.3f};{int(a > 0)}\n".replace(".", ",") for a, b in values))
    refused = run_cli_in_process(["data=csv", f"data.path={path}", "data.target=y", "trainer.max_epochs=1"], store)
    assert_refused(refused, store, f"{path}:2", "column 'a' holds", "decimal comma", """'data.decimal=","'""")


def test_balanced_class_weights_find_more_of_a_rare_class(store):
    """An imbalanced table (~8 % positives, a noisy boundary): task.class_weights=balanced weighs the rare class up
    in the training loss, so the model predicts it more often and finds more of it; regression refuses the key."""
    rng = np.random.default_rng(0)
    rows = 3000
    signal, other = rng.normal(size=rows), rng.normal(size=rows)
    rare = (signal + 0.8 * rng.normal(size=rows) > 2.0).astype(int)
    table = store["tmp"] / "rare.csv"
    pd.DataFrame({"signal": signal.round(4), "other": other.round(4), "fraud": rare}).to_csv(table, index=False)
    assert 0.04 < rare.mean() < 0.12
    found = {}
    for weights in ("null", "balanced"):
        result = run_cli_in_process(["task=classification", "data=csv", f"data.path={table}", "data.target=fraud",
                                     f"task.class_weights={weights}", "trainer.max_epochs=20", "logger=none"], store)
        assert result.returncode == 0, result.stderr[-3000:]
        [checkpoint] = [c for c in store["tmp"].glob("outputs*/checkpoints/best-*.ckpt") if c not in found.values()]
        output = store["tmp"] / f"{weights}.csv"
        code, _, stderr = predict_cli([str(checkpoint), "--input", str(table), "--output", str(output), "--keep", "fraud"])
        assert code == 0, stderr[-2000:]
        predicted = pd.read_csv(output)
        found[weights] = checkpoint
        found[f"{weights} recall"] = float(predicted.loc[predicted["fraud"] == 1, "prediction"].mean())
    assert found["balanced recall"] > found["null recall"] + 0.15, found
    refused = run_cli_in_process(["task=regression", "+task.class_weights=balanced"], store)
    assert_refused(refused, store, "task.class_weights weighs classes; task.kind=regression has none")


def _cli(main, argv: list[str]) -> tuple[int, str, str]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


def test_positive_class_chooses_the_class_f1_ap_and_the_threshold_are_of(store):
    """Labels fraud (~8 %) and ok: binary f1 and ap were of the second class in sorted order, ok, so a useless
    model scored f1 0.98 and selecting by val/f1 or val/ap selected for finding ok. Without task.positive_class
    that stays (bundled data sets keep their numbers), but the run is tagged positive_class=ok and warns, naming
    task.positive_class=fraud; with it, test/f1 and test/ap are scikit-learn's for fraud on the run's own test
    predictions, the console says so, and pipeline-predict --threshold cuts P(fraud). An unknown label is refused
    before any run, naming the classes."""
    from sklearn.metrics import average_precision_score, f1_score

    rng = np.random.default_rng(15)
    rows = 1200
    signal, other = rng.normal(size=rows), rng.normal(size=rows)
    label = np.where(signal + 0.5 * rng.normal(size=rows) > 1.5, "fraud", "ok")
    table = store["tmp"] / "fraud.csv"
    pd.DataFrame({"signal": signal.round(4), "other": other.round(4), "y": label}).to_csv(table, index=False)
    assert 0.04 < (label == "fraud").mean() < 0.12
    common = ["task=classification", "data=csv", f"data.path={table}", "data.target=y", "trainer.max_epochs=15",
              "optimizer.lr=0.01", "task.test_intervals=200"]
    refused = run_cli_in_process(common + ["task.positive_class=frod"], store)
    assert_refused(refused, store, "task.positive_class=frod is not a class of this data", "fraud, ok")
    seen = {}
    for positive in (None, "fraud"):
        result = run_cli_in_process(common + ([f"task.positive_class={positive}"] if positive else []), store)
        assert result.returncode == 0, result.stderr[-3000:]
        [run] = [r for r in runs_in(store) if r.info.run_id not in seen]
        seen[run.info.run_id] = positive
        output = result.stdout + result.stderr
        folder = Path(re.search(r"Outputs \([^)]*\): (\S+)", output).group(1))
        tested = pd.read_csv(folder / "predictions" / "test.csv")
        scored = positive or "ok"
        assert run.data.tags["positive_class"] == scored
        assert f"f1 and ap: of the class {scored}, the positive class" in output
        warned = "task.positive_class=fraud scores the rare class" in output
        assert warned == (positive is None), output[-3000:]
        truth = tested["target"].astype(str) == scored
        assert run.data.metrics["test/f1"] == pytest.approx(
            f1_score(tested["target"].astype(str), tested["prediction"].astype(str), pos_label=scored), abs=1e-6)
        assert run.data.metrics["test/ap"] == pytest.approx(
            average_precision_score(truth, tested[f"probability_{scored}"]), abs=1e-5)
        low, high = run.data.metrics["test/f1_ci_low"], run.data.metrics["test/f1_ci_high"]
        assert low <= run.data.metrics["test/f1"] <= high
    assert run.data.metrics["test/f1"] > 0  # the model finds some fraud: a meaningful comparison
    # pipeline-compare: the paired comparison scores each run's positive class (it scored the second class, "ok",
    # whatever the run's was) and refuses runs of different positive classes; the table does not rank them together
    from pipeline.cli.compare import main as compare

    first, second = list(seen)
    code, out, err = _cli(compare, ["--paired", second, second, "--tracking-uri", store["uri"]])
    assert code == 0, err
    f1_line = next(line for line in out.splitlines() if line.startswith("f1 "))
    assert float(f1_line.split()[1]) == pytest.approx(run.data.metrics["test/f1"], abs=1e-4), out
    code, out, err = _cli(compare, ["--paired", first, second, "--tracking-uri", store["uri"]])
    assert code == 2 and "score f1 and ap of different classes (task.positive_class: ok and fraud)" in err, err
    code, out, err = _cli(compare, ["--tracking-uri", store["uri"], "--output", str(store["tmp"] / "cmp")])
    assert code == 0 and "1 run on other data left out: it differs in task.positive_class" in out, out
    # a sweep's trials build a module each from the same settings: the warning is said once, not once per trial
    swept = run_cli_in_process(["-m", "hparams_search=classification_optuna", "hydra.sweeper.n_trials=3",
                                "hydra.sweeper.sampler=random", f"hydra.sweep.dir={store['tmp'] / 'sweep'}",
                                *common[:4], "trainer.max_epochs=2"], store)
    assert swept.returncode == 0, swept.stderr[-3000:]
    assert (swept.stdout + swept.stderr).count("task.positive_class=fraud scores the rare class") == 1
    # the logged model cuts P(fraud), the positive class, at --threshold
    predicted = store["tmp"] / "cut.csv"
    code, _, stderr = predict_cli([run.info.run_id, "--input", str(table), "--output", str(predicted),
                                   "--threshold", "0.2", "--tracking-uri", store["uri"]])
    assert code == 0, stderr[-2000:]
    cut = pd.read_csv(predicted)
    assert (cut["prediction"] == np.where(cut["probability_fraud"] >= 0.2, "fraud", "ok")).all()
    assert (cut["prediction"] == "fraud").sum() > (cut["probability_fraud"] > 0.5).sum()  # the cut-off moved


def test_dates_give_month_and_weekday_inputs(store):
    """Sales that follow the weekday and the season: a day count alone cannot learn them (R² near 0), its month
    and weekday as categorical inputs can; predictions from the written dates give the run's test RMSE."""
    rng = np.random.default_rng(0)
    days = pd.Timestamp("2022-01-01") + pd.to_timedelta(rng.integers(0, 730, 1500), unit="D")
    sales = 100 + 40 * (days.day_of_week >= 5) + 25 * np.isin(days.month, [11, 12]) + rng.normal(0, 5, len(days))
    table = store["tmp"] / "sales.csv"
    pd.DataFrame({"day": days.strftime("%Y-%m-%d"), "sales": sales.round(2)}).to_csv(table, index=False)
    scores = {}
    for features in ("true", "false"):
        result = run_cli_in_process(["task=regression", "data=csv", f"data.path={table}", "data.target=sales",
                                     f"data.date_features={features}", "trainer.max_epochs=30", "optimizer.lr=0.01",
                                     "logger=none"], store)
        assert result.returncode == 0, result.stderr[-3000:]
        output = result.stdout + result.stderr
        scores[features] = dict(re.findall(r"test/(\w+)=([-\d.e]+)", output))
        assert ("'day' (month, weekday)" in output) == (features == "true"), output[-3000:]
    assert float(scores["true"]["r2"]) > 0.9 and float(scores["false"]["r2"]) < 0.3, scores

    with_parts = [c for c in store["tmp"].glob("outputs*/checkpoints/best-*.ckpt")
                  if "day.weekday" in (c.parent.parent / "data" / "preprocessing.json").read_text()]
    assert len(with_parts) == 1  # the run with date features saved them with its preprocessing; the other did not
    checkpoint = with_parts[0]
    predictions = store["tmp"] / "predictions.csv"
    code, _, stderr = predict_cli([str(checkpoint), "--input", str(table), "--output", str(predictions)])
    assert code == 0, stderr[-2000:]
    assert pd.read_csv(predictions)["prediction"].std() > 15  # weekends and the season apart, as trained
    american = store["tmp"] / "american.csv"
    american.write_text("day,sales\n12/05/2023,1\n")
    code, _, stderr = predict_cli([str(checkpoint), "--input", str(american), "--output", str(predictions)])
    assert code == 2 and "column 'day' holds '12/05/2023'" in stderr and "a date is read as ISO 8601" in stderr, stderr


def test_a_date_column_with_invalid_dates_is_refused_as_dates_naming_them_and_their_lines(store):
    """ISO dates but for '2021-02-30' (twice) and '01/05/2021': refused as "holds values that are not numbers ...
    if the column is categorical add data.categorical=[d]", as if the dates were numbers, and the advice would
    have made 500 dates 500 categories. It says the column reads as dates and names the cells that are not."""
    rng = np.random.default_rng(0)
    dates = pd.date_range("2021-01-01", periods=500).strftime("%Y-%m-%d").to_numpy(dtype=object)
    dates[[10, 20]], dates[30] = "2021-02-30", "01/05/2021"
    x = rng.normal(size=500)
    path = store["tmp"] / "dated.csv"
    pd.DataFrame({"d": dates, "x": x, "y": np.where(x > 0, "a", "b")}).to_csv(path, index=False)
    result = run_cli_in_process(["data=csv", f"data.path={path}", "data.target=y"], store)
    assert_refused(result, store, f"{path}:12: column 'd' reads as dates", "3 cells are not valid dates",
                   "'2021-02-30' (2 rows: lines 12, 22)", "'01/05/2021' (1 row: line 32)", "data.na_values")
    line = error_line(result.stderr)
    assert "data.categorical" not in line and "not numbers" not in line, line


def test_date_parts_a_column_already_holds_are_said_not_dropped_silently(store):
    days = pd.Timestamp("2022-01-01") + pd.to_timedelta(np.arange(80) * 3, unit="D")
    table = store["tmp"] / "clash.csv"
    pd.DataFrame({"day": days.strftime("%Y-%m-%d"), "day.month": np.arange(80) % 7 * 1.5,
                  "label": np.arange(80) % 2}).to_csv(table, index=False)
    result = run_cli_in_process(["data=csv", f"data.path={table}", "data.target=label", "trainer.max_epochs=1",
                                 "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("the dates of 'day' give no month/weekday/hour inputs: the file has a column named 'day.month' already"
            in result.stdout + result.stderr), (result.stdout + result.stderr)[-3000:]


def skewed_prices(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=rows), rng.normal(size=rows)
    return pd.DataFrame({"x1": x1.round(4), "x2": x2.round(4),
                         "price": (np.exp(1.5 * x1 + 0.5 * x2 + rng.normal(0, 0.3, rows)) * 1000).round(2)})


def test_a_log_target_is_learned_in_log_space_and_predicted_in_its_units(store):
    """task.target_transform=log: the model learns log1p of a skewed price; the test metrics, pipeline-predict's
    answers and the served model are in the price's units (expm1), never below zero; targets <= -1 are refused."""
    train, test = store["tmp"] / "train.csv", store["tmp"] / "test.csv"
    skewed_prices(1500, 0).to_csv(train, index=False)
    skewed_prices(500, 1).to_csv(test, index=False)
    result = run_cli_in_process(["task=regression", "data=csv", f"data.path={train}", f"data.test_path={test}",
                                 "data.target=price", "task.target_transform=log", "trainer.max_epochs=30",
                                 "optimizer.lr=0.01", "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = dict(re.findall(r"test/(\w+)=([-\d.e]+)", result.stdout))
    assert float(metrics["r2"]) > 0.3, metrics  # a heavy tail: a few prices far out weigh on the squared error
    [checkpoint] = (store["outputs"] / "checkpoints").glob("best-*.ckpt")
    predictions = store["tmp"] / "predictions.csv"
    code, _, stderr = predict_cli([str(checkpoint), "--input", str(test), "--output", str(predictions)])
    assert code == 0, stderr[-2000:]
    predicted, truth = pd.read_csv(predictions)["prediction"].to_numpy(), pd.read_csv(test)["price"].to_numpy()
    assert predicted.min() > 0
    assert math.sqrt(float(np.mean((predicted - truth) ** 2))) == pytest.approx(float(metrics["rmse"]), rel=1e-3)
    assert_refused(run_cli_in_process(["task=regression", "data=synthetic_linear", "task.target_transform=log"], store),
                   store, "task.target_transform=log needs targets > -1 (log1p); the training rows' smallest is -")
    assert_refused(run_cli_in_process(["task=classification", "+task.target_transform=log"], store), store,
                   "task.target_transform transforms a regression target; task.kind=classification has none")


def test_pipeline_eval_refuses_test_targets_a_log_target_cannot_take(store):
    """A model that learned log1p of its target, tested on a file with a target <= -1: refused as training refuses
    such targets (the same message, naming the file, the column and the values), before any evaluation run; it
    was tested, and its evaluation run FINISHED, with test/loss=nan."""
    train, negative = store["tmp"] / "train.csv", store["tmp"] / "negative.csv"
    skewed_prices(300, 0).to_csv(train, index=False)
    rows = skewed_prices(50, 1)
    rows.loc[3, "price"] = -5
    rows.to_csv(negative, index=False)
    result = run_cli_in_process(["task=regression", "data=csv", f"data.path={train}", "data.target=price",
                                 "task.target_transform=log", "trainer.max_epochs=1", "logger.mlflow.log_model=false",
                                 "logger.mlflow.log_plots=false"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs_in(store)
    code, stdout, stderr = eval_cli([run.info.run_id, f"data.test_path={negative}", "--tracking-uri", store["uri"],
                                     "--output-dir", str(store["tmp"] / "evaluation")])
    assert code == 2, (stdout[-2000:], stderr[-2000:])
    assert error_line(stderr) == (
        "Error: task.target_transform=log needs targets > -1 (log1p); the test rows' smallest is -5.0 "
        f"(data.test_path={negative}, column 'price', 1 row(s) <= -1: -5)")
    assert [r.info.run_id for r in runs_in(store)] == [run.info.run_id]


def test_pipeline_eval_refuses_overrides_that_would_read_the_table_otherwise(store):
    """pipeline-eval data.numeric_transform=quantile (or another encoding) was tested with the run's fitted
    preprocessing, the override ignored while the evaluation run recorded it: refused before any run, naming the
    keys and the run's values; an override that reads the same inputs (the batch size) still evaluates."""
    train, new = store["tmp"] / "train.csv", store["tmp"] / "new.csv"
    write_csv(people(300, seed=0), train)
    write_csv(people(60, seed=1), new)
    result = run_cli_in_process(["task=classification", "data=csv", f"data.path={train}", "data.target=label",
                                 "trainer.max_epochs=1", "logger.mlflow.log_model=false",
                                 "logger.mlflow.log_plots=false"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs_in(store)
    code, stdout, stderr = eval_cli([run.info.run_id, f"data.test_path={new}", "data.numeric_transform=quantile",
                                     "data.categorical_encoding=onehot", "--tracking-uri", store["uri"],
                                     "--output-dir", str(store["tmp"] / "refused")])
    assert code == 2, (stdout[-2000:], stderr[-2000:])
    assert error_line(stderr).startswith(
        "Error: data.categorical_encoding=onehot (the run's: embedding), data.numeric_transform=quantile (the run's: "
        "standard): pipeline-eval tests the model on inputs made as the run made them"), error_line(stderr)
    assert [r.info.run_id for r in runs_in(store)] == [run.info.run_id]
    # the run's own value, and keys that do not change the inputs: evaluated
    code, stdout, stderr = eval_cli([run.info.run_id, f"data.test_path={new}", "data.numeric_transform=standard",
                                     "data.eval_batch_size=7", "--tracking-uri", store["uri"],
                                     "--output-dir", str(store["tmp"] / "evaluation")])
    assert code == 0, stderr[-3000:]
    [evaluation] = [r for r in runs_in(store) if r.data.tags.get("evaluation_of") == run.info.run_id]
    assert evaluation.info.status == "FINISHED"


def test_a_title_above_the_header_is_left_out_with_data_skip_rows(people_run, store):
    """A report's title and a blank line above the header, in a CSV and in a sheet: refused with the number of
    lines to leave out; data.skip_rows leaves them out, line numbers in errors still count from the file's first
    line, and pipeline-predict --skip-rows reads the same file."""
    titled = store["tmp"] / "report.csv"
    lines = people_run["train"].read_text().splitlines(keepends=True)
    titled.write_text("Registry export, 2024\n\n" + "".join(lines))
    assert_refused(run_cli_in_process(["data=csv", f"data.path={titled}", "data.target=label"], store), store,
                   f"{titled}:3: expected 2 columns, found 7", "leave out the 2 line(s) above its header with "
                   "data.skip_rows=2")
    common = ["data=csv", "data.target=label", "data.skip_rows=2", "trainer.max_epochs=1", "logger=none"]
    result = run_cli_in_process([*common, f"data.path={titled}"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    [checkpoint] = store["tmp"].glob("outputs*/checkpoints/best-*.ckpt")
    output = store["tmp"] / "predictions.csv"
    code, _, stderr = predict_cli([str(checkpoint), "--input", str(titled), "--output", str(output)])
    assert code == 2 and "--skip-rows=2" in stderr, stderr[-2000:]
    code, _, stderr = predict_cli([str(checkpoint), "--input", str(titled), "--output", str(output), "--skip-rows", "2"])
    assert code == 0 and len(pd.read_csv(output)) == 600, stderr[-2000:]
    lines[9] = ",".join(["p-x", "seven", *lines[9].split(",")[2:]])  # line 10 of the file, 12 with the title
    titled.write_text("Registry export, 2024\n\n" + "".join(lines))
    assert_refused(run_cli_in_process([*common, f"data.path={titled}"], store), store,
                   f"{titled}:12:", "column 'score' holds 'seven'")

    book = store["tmp"] / "report.xlsx"
    with pd.ExcelWriter(book) as writer:
        pd.DataFrame([["Registry export, 2024"]]).to_excel(writer, index=False, header=False)
        pd.read_csv(people_run["test"], dtype=str).to_excel(writer, index=False, startrow=2)
    assert_refused(run_cli_in_process(["data=csv", f"data.path={book}", "data.target=label"], store), store,
                   "row 1 holds one name, 'Registry export, 2024'", "data.skip_rows=2")
    result = run_cli_in_process([*common, f"data.path={book}"], store)
    assert result.returncode == 0, result.stderr[-3000:]


def test_an_excel_workbook_trains_from_its_sheet_and_predicts(people_run, store):
    """A workbook with a notes sheet first: the first sheet is read with a notice, so the target is not found
    and the error names the other sheet; data.sheet chooses it, Excel's typed cells (numbers, text, dates) and
    '?' read as in the CSV, and pipeline-predict answers on a workbook as on the same rows in CSV."""
    rows = pd.read_csv(people_run["train"], dtype=str, keep_default_na=False)
    rows["score"] = pd.to_numeric(rows["score"]).astype(object)  # typed cells, as Excel keeps them
    rows.loc[7, "score"] = "#DIV/0!"  # a formula's error value: missing, in the workbook and in its CSV
    rows["joined"] = pd.Timestamp("2023-01-01") + pd.to_timedelta(np.arange(len(rows)) % 300, unit="D")
    book = store["tmp"] / "people.xlsx"
    with pd.ExcelWriter(book) as writer:
        pd.DataFrame({"note": ["exported from the registry"]}).to_excel(writer, sheet_name="README", index=False)
        rows.to_excel(writer, sheet_name="people", index=False)
    common = ["data=csv", f"data.path={book}", "data.target=label", "trainer.max_epochs=3", "logger=none"]
    refused = run_cli_in_process(common, store)
    assert_refused(refused, store, "column 'label' not in", "read its sheet 'README'; it also has 'people'")
    assert "read its first sheet, 'README', of 2" in refused.stdout + refused.stderr
    result = run_cli_in_process([*common, "data.sheet=people"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "'joined' (month, weekday)" in result.stdout + result.stderr  # Excel's dates are dates

    [checkpoint] = store["tmp"].glob("outputs*/checkpoints/best-*.ckpt")
    csv_rows = store["tmp"] / "people.csv"
    rows.assign(joined=rows["joined"].dt.strftime("%Y-%m-%d")).to_csv(csv_rows, index=False)
    answers = []
    for source, extra in ((book, ["--sheet", "people"]), (csv_rows, [])):
        output = store["tmp"] / f"{source.name}.predictions.csv"
        code, _, stderr = predict_cli([str(checkpoint), "--input", str(source), "--output", str(output), *extra])
        assert code == 0, (source, stderr[-3000:])
        answers.append(pd.read_csv(output, dtype={"prediction": str}))
    assert len(answers[0]) == len(rows)
    pd.testing.assert_frame_equal(answers[0], answers[1])
    sheet = store["tmp"] / "predictions.xlsx"  # the answers written as a workbook, with an id kept
    code, _, stderr = predict_cli([str(checkpoint), "--input", str(book), "--output", str(sheet), "--sheet", "people",
                                   "--keep", "id", "--batch-size", "100"])
    assert code == 0, stderr[-3000:]
    written = pd.read_excel(sheet, sheet_name="predictions", dtype={"prediction": str})
    assert written["id"].tolist() == rows["id"].tolist()
    pd.testing.assert_frame_equal(written.drop(columns="id"), answers[0], check_exact=False, rtol=1e-6)

    bad = store["tmp"] / "bad.xlsx"
    pd.DataFrame([[1, 2, 0]], columns=["a", "a", "label"]).to_excel(bad, index=False)
    assert_refused(run_cli_in_process(["data=csv", f"data.path={bad}", "data.target=label"], store), store,
                   str(bad), "duplicate column names: 'a'")
    # the sheet to_excel writes by default (index=True): its first header cell is empty, the rows' numbers below;
    # the column is left out as a CSV file's unnamed index is, not refused and not learned
    indexed = store["tmp"] / "indexed.xlsx"
    rows.to_excel(indexed, sheet_name="people")
    result = run_cli_in_process(["data=csv", f"data.path={indexed}", "data.target=label", "trainer.max_epochs=1",
                                 "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "left out 'Unnamed: 0' (no name in the header: the row index pandas writes)" in result.stdout + result.stderr


# ----- refused, with one line naming the file and the column ------------------------------------------------------
def table_text(header: str, rows: list[str]) -> str:
    return "\n".join([header, *rows]) + "\n"


GOOD = [f"{i * 0.37:.2f},{'ab'[i % 2]},{i % 2}" for i in range(40)]
REFUSED = [
    ("duplicate column name", table_text("a,b,a,label", [f"{i},x,{i},{i % 2}" for i in range(40)]),
     ["duplicate column names: 'a' (columns 1, 3)"]),
    ("one class", table_text("a,b,label", [f"{i},{'xy'[i % 2]},yes" for i in range(40)]),  # b varies: not left out
     ["holds a single class ['yes']"]),
    ("float32 overflow", table_text("a,b,label", [*GOOD, "1e39,a,1"]), [":42:", "column 'a'", "float32"]),
    ("infinite value", table_text("a,b,label", [*GOOD, "inf,a,1"]), [":42:", "column 'a'", "not a finite number"]),
    ("text in a numeric column", table_text("a,b,label", [*GOOD[:5], "seven,a,1", *GOOD[5:]]),
     [":7:", "column 'a' holds 'seven'", "data.na_values=['seven']", "data.categorical=[a]"]),
    ("constant regression target", table_text("a,b,label", [f"{i},x,7.0" for i in range(40)]) + "40,y,7\n",
     ["column 'label' holds a single value, 7, in every row; a regression model needs a target that varies"]),
    # every distinct value is named, with its count: following the hint for the first met the next one
    ("several texts in a numeric column", table_text("a,b,label", [*GOOD[:5], "unknown,a,1", "2024-02-30,b,0",
                                                                   *GOOD[5:], *GOOD, "unknown,a,1"]),
     [":7:", "column 'a' holds values that are not numbers: 'unknown' (2 rows), '2024-02-30' (1 row)",
      "data.na_values=['unknown', '2024-02-30']", "data.categorical=[a]"]),
    ("fractional labels", table_text("a,b,label", [*GOOD, "3,a,0.5"]), [":42:", "'0.5'", "not a class"]),
    ("semicolon-separated, a row short", table_text("a;b;label", [g.replace(",", ";") for g in GOOD] + ["1;x"]),
     ["column 'label' not in", "looks ';'-separated", """set 'data.sep=";"'"""]),
    ("decimal commas", table_text("a,b,label", [f'"{i * 0.37:.2f}",{"ab"[i % 2]},{i % 2}'.replace(".", ",", 1)
                                                 for i in range(40)]),
     [":2:", "column 'a' holds '0,00'", "decimal comma", """'data.decimal=","'""", "data.categorical=[a]"]),
    ("tab-separated in a .csv, a row long", table_text("a\tb\tlabel", [g.replace(",", "\t") for g in GOOD] + ["1\tx\t0\t9"]),
     ["column 'label' not in", "tab-separated", "data.format=tsv"]),
    # a comma inside a name of a ;-separated header: read as ','-separated into two columns, without the hint
    ("semicolon-separated, a comma in a name", table_text("weight, kg;b;label", [f"{60 + i},5;{'ab'[i % 2]};{i % 2}"
                                                                                for i in range(40)]),
     ["column 'label' not in", "columns are ['weight', 'kg;b;label']", "the file looks ';'-separated, with a ',' "
      "inside a name", """set 'data.sep=";"'"""]),
]


def test_a_regression_target_with_a_few_dashes_is_offered_na_values_which_then_leaves_those_rows_out(store):
    """'-' in 2 rows of a regression target was refused without the data.na_values hint that fixes it."""
    path = store["tmp"] / "table.csv"
    path.write_text(table_text("a,price", [f"{i * 0.37:.2f},{i * 1.5:.1f}" for i in range(60)] + ["1,-", "2,-"]))
    common = ["task=regression", "data=csv", f"data.path={path}", "data.target=price"]
    assert_refused(run_cli_in_process(common, store), store, ":62:", "column 'price' holds '-', not a number",
                   "task=classification", "if it means missing add \"data.na_values=['-']\" (those rows are then left out)")
    result = run_cli_in_process([*common, "data.na_values=['-']", "trainer.max_epochs=1", "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "data.target: 2 row(s) of" in output and "are left out" in output, output[-3000:]


def test_a_categorical_column_of_mostly_rare_values_is_named_with_the_key_that_keeps_them(store):
    """data.categorical=[zip] on ~1 distinct value per row kept next to no category (data.min_category_count=5),
    silently: the column named on purpose became nearly constant."""
    rng = np.random.default_rng(0)
    path = store["tmp"] / "zips.csv"
    pd.DataFrame({"a": rng.normal(size=300), "zip": [str(10000 + i % 250) for i in range(300)],
                  "label": rng.integers(0, 2, 300)}).to_csv(path, index=False)
    result = run_cli_in_process(["data=csv", f"data.path={path}", "data.target=label", "data.categorical=[zip]",
                                 "trainer.max_epochs=1", "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert re.search(r"data: column 'zip': \d+ of its \d+ distinct values \(\d+ of \d+ rows\) are seen fewer than "
                     r"data.min_category_count=5 times and share the unseen/rare category, leaving \d+ categories; "
                     r"lower data.min_category_count", output), output[-3000:]


def regions(rows: int, seed: int) -> pd.DataFrame:
    """A class 'NA' (North America), which pandas reads as missing, that the feature ``a`` tells apart."""
    a = np.random.default_rng(seed).uniform(-3, 3, rows)
    return pd.DataFrame({"a": np.round(a, 3), "region": np.where(a < -1, "NA", np.where(a > 1, "EU", "AS"))})


def test_a_class_spelled_na_is_named_and_kept_with_data_target_keep_values(store):
    """'region' NA/EU/AS lost every NA row with only 'have no value ... left out', and the model became AS/EU."""
    train, new = store["tmp"] / "regions.csv", store["tmp"] / "new.csv"
    regions(600, 0).to_csv(train, index=False)
    regions(60, 1).to_csv(new, index=False)
    count = int((regions(600, 0)["region"] == "NA").sum())
    common = ["data=csv", f"data.path={train}", "data.target=region", "trainer.max_epochs=1", "logger=none"]
    result = run_cli_in_process(common, store)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (f"data.target: {count} row(s) of {train} have no value in column 'region' ({count} written 'NA') and are "
            "left out") in result.stdout + result.stderr
    assert "if 'NA' is a class, keep it with data.target_keep_values=[NA]" in result.stdout + result.stderr

    for bad, says in (("[XX]", "data.target_keep_values: 'XX' is not read as missing, so there is nothing to keep"),
                      ("[null]", "quote each spelling")):
        assert_refused(run_cli_in_process([*common, f"data.target_keep_values={bad}"], store), store, says)

    kept = store["tmp"] / "kept" / "mlruns"  # a store of its own: the run of the notice above is in the first
    kept.mkdir(parents=True)
    store = {**store, "uri": f"sqlite:///{kept}/mlflow.db", "artifacts": str(kept / "artifacts"),
             "outputs": store["tmp"] / "kept" / "outputs"}
    result = run_cli_in_process([*common[:-2], "data.target_keep_values=[NA]", "trainer.max_epochs=60",
                                 "optimizer.lr=0.05", *SHORT_RUN], store)
    run = finished_run(store, result)
    assert "have no value" not in result.stdout + result.stderr
    tested = pd.read_csv(store["outputs"] / "predictions" / "test.csv", keep_default_na=False)
    assert "NA" in set(tested["prediction"]), tested.head()
    # pipeline-predict, the logged model and pipeline-eval read and answer the class NA alike
    output = store["tmp"] / "new_predictions.csv"
    code, _, stderr = predict_cli([run.info.run_id, "--input", str(new), "--output", str(output),
                                   "--tracking-uri", store["uri"]])
    assert code == 0, stderr[-3000:]
    predicted = pd.read_csv(output, keep_default_na=False)
    assert "probability_NA" in predicted.columns
    truth = regions(60, 1)["region"]
    assert (predicted["prediction"][truth == "NA"] == "NA").mean() > 0.8, predicted.head()
    by_mlflow = load_pyfunc(store, run.info.run_id).predict(pd.read_csv(new))
    assert (by_mlflow["prediction"].to_numpy() == predicted["prediction"].to_numpy()).all()
    code, stdout, stderr = eval_cli([run.info.run_id, f"data.test_path={new}", "--tracking-uri", store["uri"],
                                     "--output-dir", str(store["tmp"] / "evaluation")])
    assert code == 0 and "have no value" not in stdout + stderr, stderr[-3000:]
    assert "60 test rows" in stdout, stdout


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_a_file_separated_otherwise_is_read_with_a_notice(store, sep):
    """A ';' export, a tab-separated .csv, a '|' file: the header is one column with ',', and the separator that
    splits it and every row alike is taken, with a notice."""
    path = store["tmp"] / "table.csv"
    path.write_text(table_text(sep.join(["a", "b", "label"]), [g.replace(",", sep) for g in GOOD]))
    result = run_cli_in_process(["data=csv", f"data.path={path}", "data.target=label", "trainer.max_epochs=1",
                                 "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    name = "tab" if sep == "\t" else repr(sep)
    assert f"read as {name}-separated (its header holds no ',')" in result.stdout + result.stderr


@pytest.mark.parametrize("case,text,fragments", REFUSED, ids=[c[0] for c in REFUSED])
def test_bad_tables_are_refused_before_any_run(store, case, text, fragments):
    path = store["tmp"] / "table.csv"
    path.write_text(text)
    task = ["task=regression"] if "regression" in case else []
    result = run_cli_in_process([*task, "data=csv", f"data.path={path}", "data.target=label"], store)
    assert_refused(result, store, str(path), *fragments)


def test_a_separator_is_one_character_and_a_tab_is_given_as_the_refusal_says(people_run, store):
    """'data.sep="\\t"' (a backslash and a t) and "::" crashed with 'unexpected TypeError: "delimiter" must be a
    1-character string' (exit 1; pipeline-predict: a traceback); an empty separator read the file with ','."""
    tabbed = store["tmp"] / "tabbed.csv"
    tabbed.write_text(people_run["train"].read_text().replace(",", "\t"))
    common = ["data=csv", f"data.path={tabbed}", "data.target=label"]
    for sep, says in (("\\t", "data.sep: \\t arrives as two characters, a backslash and a t"),
                      ("", "data.sep is empty (an unquoted tab is dropped on the command line)")):
        assert_refused(run_cli_in_process([*common, f'data.sep="{sep}"'], store), store, says,
                       """set data.format=tsv, or a real tab: $'data.sep="\\t"'""")
    assert_refused(run_cli_in_process([*common, 'data.sep="::"'], store), store,
                   "data.sep='::': a column separator is one character")
    result = run_cli_in_process([*common, 'data.sep="\t"', "trainer.max_epochs=1", "logger=none"], store)  # a real tab
    assert result.returncode == 0, result.stderr[-3000:]
    run, output = people_run["run"].info.run_id, store["tmp"] / "predictions.csv"
    common = [run, "--input", str(tabbed), "--output", str(output), "--tracking-uri", people_run["store"]["uri"]]
    for sep, says in (("\\t", "Error: --sep: \\t arrives as two characters, a backslash and a t, and a column "
                              "separator is one character; for a tab-separated file set --format tsv, or a real tab: "
                              "--sep $'\\t'"),
                      ("::", "Error: --sep '::': a column separator is one character, e.g. ',' ';' '|'"),
                      ("", "Error: --sep is empty, and a column separator is one character")):
        code, _, stderr = predict_cli([*common, "--sep", sep])
        assert code == 2 and error_line(stderr).startswith(says), stderr[-2000:]
    for given in (["--sep", "\t"], ["--format", "tsv"]):
        code, _, stderr = predict_cli([*common, *given])
        assert code == 0 and len(pd.read_csv(output)) == 600, stderr[-2000:]


def test_a_json_array_of_records_is_a_table_and_a_json_of_columns_is_refused(people_run, store):
    """df.to_json(orient="records") on one line was read as 1 row of 600 columns (the training) and the indented
    array was refused by pipeline-predict; pandas' default layout (an object of columns) was read as one row."""
    rows = pd.read_csv(people_run["train"], dtype=str, keep_default_na=False)
    one_line, indented, columns = (store["tmp"] / name for name in ("rows.json", "indented.json", "columns.json"))
    rows.to_json(one_line, orient="records")
    rows.to_json(indented, orient="records", indent=2)
    rows.to_json(columns)
    layouts = ("tables are read from JSON lines (one object per line: df.to_json(path, orient='records', lines=True)) "
               "or one array of objects ([{...}, {...}]: orient='records')")
    assert_refused(run_cli_in_process(["data=csv", f"data.path={columns}", "data.target=label"], store), store,
                   f"{columns}: one JSON object of columns (pandas' to_json() default, orient='columns'), not rows; "
                   + layouts)
    for path in (one_line, indented):
        result = run_cli_in_process(["data=csv", f"data.path={path}", "data.target=label", "trainer.max_epochs=1",
                                     "logger=none"], store)
        assert result.returncode == 0, result.stderr[-3000:]
        sizes = re.search(r"([\d,]+) train / ([\d,]+) validation / ([\d,]+) test", result.stdout).groups()
        assert sum(int(n.replace(",", "")) for n in sizes) == 600, result.stdout[-2000:]

    run, uri = people_run["run"].info.run_id, people_run["store"]["uri"]
    new = pd.read_csv(people_run["test"], dtype=str, keep_default_na=False)
    new.to_json(indented, orient="records", indent=2)
    answers = []
    for source in (people_run["test"], indented):
        output = store["tmp"] / f"{source.name}.predictions.csv"
        code, _, stderr = predict_cli([run, "--input", str(source), "--output", str(output), "--batch-size", "64",
                                       "--tracking-uri", uri])
        assert code == 0, stderr[-2000:]
        answers.append(pd.read_csv(output, dtype={"prediction": str}))
    assert len(answers[1]) == 300
    pd.testing.assert_frame_equal(answers[0], answers[1])
    new.to_json(columns)
    code, _, stderr = predict_cli([run, "--input", str(columns), "--output", str(output), "--tracking-uri", uri])
    assert code == 2 and layouts in error_line(stderr) and len(error_line(stderr)) < 400, stderr[-2000:]


def test_a_column_name_written_otherwise_gets_the_nearest_name(store):
    path = store["tmp"] / "named.csv"
    path.write_text(table_text("age,colour,Label", GOOD))
    assert_refused(run_cli_in_process(["data=csv", f"data.path={path}", "data.target=label"], store), store,
                   "data.target: column 'label' not in", "did you mean 'Label'?")
    assert_refused(run_cli_in_process(["data=csv", f"data.path={path}", "data.target=Label", "data.drop=[color]"], store),
                   store, "data.drop: ['color'] are not feature columns", "did you mean 'colour'?")
    assert_refused(run_cli_in_process(["data=csv", f"data.path={path}", "data.target=Label", "data.features=[]"], store),
                   store, "data.features=[] lists no column")  # it read every column
    # a column named by a year is a name: the hint for a file without a header row took the place of the nearest name
    path.write_text(table_text("age,2024,Label", GOOD))
    result = run_cli_in_process(["data=csv", f"data.path={path}", "data.target=label"], store)
    assert_refused(result, store, "data.target: column 'label' not in", "did you mean 'Label'?")
    assert "looks like data" not in result.stderr


def test_a_suggested_override_for_a_column_name_with_spaces_is_typed_as_given(store):
    """The override a refusal suggests must work when pasted into a shell: a name with spaces and brackets quoted
    for Hydra and the whole for the shell (Hydra could not parse data.categorical=[sepal length (cm)])."""
    path = store["tmp"] / "spaced.csv"
    path.write_text(table_text("sepal length (cm),b,label", [*GOOD[:5], "seven,a,1", *GOOD[5:]]))
    line = error_line(run_cli_in_process(["data=csv", f"data.path={path}", "data.target=label"], store).stderr)
    suggested = '"data.categorical=[\'sepal length (cm)\']"'
    assert suggested in line, line
    result = run_cli_in_process(["data=csv", f"data.path={path}", "data.target=label", suggested.strip('"'),
                                 "trainer.max_epochs=1", "logger=none"], store)
    assert result.returncode == 0, result.stderr[-2000:]


def test_numbers_written_with_a_unit_in_a_forced_numeric_column_are_not_called_missing(store):
    """Half the cells written '6,971 km': the refusal used to suggest data.na_values for one of them."""
    path = store["tmp"] / "cars.csv"
    path.write_text(table_text("mileage,b,label", [f'"{1000 + 37 * i:,} km",{"ab"[i % 2]},{i % 2}' if i % 2 else
                                                   f"{1000 + 37 * i},{'ab'[i % 2]},{i % 2}" for i in range(40)]))
    line = error_line(run_cli_in_process(["data=csv", f"data.path={path}", "data.target=label", "data.numeric=[mileage]"],
                                         store).stderr)
    assert "20 of 40 cells, 20 distinct, are not numbers as written, e.g. with a unit" in line, line
    assert "data.na_values" not in line and "data.categorical=[mileage]" in line


def test_binary_and_mismatched_test_files_are_refused(store):
    binary = store["tmp"] / "table.csv"
    binary.write_bytes(b"PK\x03\x04\x00\x00binary\x00" * 50)
    assert_refused(run_cli_in_process(["data=csv", f"data.path={binary}", "data.target=label"], store), store,
                   str(binary), "binary file")
    train = store["tmp"] / "train.csv"
    train.write_text(table_text("a,b,label", GOOD))
    test = store["tmp"] / "test.tsv"
    test.write_text(table_text("a\tb\tlabel", ["1\tx\t0", "oops\ty\t1", *(f"{i}\tx\t{i % 2}" for i in range(30))]))
    result = run_cli_in_process(["data=csv", f"data.path={train}", f"data.test_path={test}", "data.target=label"], store)
    assert_refused(result, store, f"{test}:3", "column 'a' holds 'oops'")


def test_a_latin1_file_is_read_with_a_notice(store):
    path = store["tmp"] / "latin1.csv"
    rows = [f"{i},{['Zürich', 'Genève', 'Köln'][i % 3]},{i % 2}" for i in range(60)]
    path.write_bytes(table_text("a,city,label", rows).encode("latin-1"))
    result = run_cli_in_process(["data=csv", f"data.path={path}", "data.target=label", "trainer.max_epochs=1",
                                 "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "is not UTF-8" in result.stdout + result.stderr and "Windows-1252" in result.stdout + result.stderr
    # pipeline-predict has no data.encoding: its notice said "set data.encoding"; it names --encoding, which reads it
    [checkpoint] = store["tmp"].glob("outputs*/checkpoints/best-*.ckpt")
    output = store["tmp"] / "predictions.csv"
    predict = ["pipeline.cli.predict", str(checkpoint), "--input", str(path), "--output", str(output), "--no-progress"]
    result = run_cli(predict[1:], module=predict[0])
    assert result.returncode == 0, result.stderr[-3000:]
    said = result.stdout + result.stderr
    assert "is not UTF-8" in said and "convert it to UTF-8 or set --encoding" in said and "data.encoding" not in said, said
    result = run_cli([*predict[1:], "--encoding", "latin-1"], module=predict[0])
    assert result.returncode == 0 and "is not UTF-8" not in result.stdout + result.stderr, result.stderr[-3000:]
    assert len(pd.read_csv(output)) == 60
    code, _, stderr = predict_cli([*predict[1:], "--encoding", "klingon"])
    assert code == 2 and "set --encoding to the file's encoding" in error_line(stderr), stderr[-2000:]


def test_a_class_only_in_the_test_file_is_refused_not_added_to_the_model(store):
    """The test file used to add its classes to the model (a binary task became a 4-way softmax when the test file
    wrote Yes/No for the training file's yes/no, and the logged model answered probability_Yes)."""
    rng = np.random.default_rng(0)
    train, test = store["tmp"] / "three_train.csv", store["tmp"] / "three_test.csv"
    for path, classes, rows in ((train, ["a", "b"], 120), (test, ["a", "b", "c"], 60)):
        pd.DataFrame({"x": rng.normal(size=rows), "y": [classes[i % len(classes)] for i in range(rows)]}).to_csv(
            path, index=False)
    result = run_cli_in_process(["data=csv", f"data.path={train}", f"data.test_path={test}", "data.target=y",
                                 "trainer.max_epochs=1"], store)
    assert_refused(result, store, f"data.test_path: labels in the test file {test} that the training file {train} "
                   "does not hold: 'c' (20 rows); the model learns the training file's classes ('a', 'b')",
                   "leave those rows out of the test file")

    cased = store["tmp"] / "cased_test.csv"
    pd.DataFrame({"x": rng.normal(size=40), "y": ["A", "B"] * 20}).to_csv(cased, index=False)
    result = run_cli_in_process(["data=csv", f"data.path={train}", f"data.test_path={cased}", "data.target=y",
                                 "trainer.max_epochs=1"], store)
    assert_refused(result, store, "'A' (20 rows), 'B' (20 rows)", "'A' may be 'a'; 'B' may be 'b'")


def test_metrics_undefined_on_the_test_rows_are_left_out_and_said_not_logged_as_0(store):
    """A test file of one class has no auroc (it needs both classes) nor ap (1 whatever the model), nor f1 when no
    row is predicted positive (0/0); test targets that do not vary have no r2. They used to be logged as 0.0, which
    reads as the worst model there is."""
    rng = np.random.default_rng(0)
    train, test = store["tmp"] / "two.csv", store["tmp"] / "only_no.csv"
    x = rng.normal(size=200)
    pd.DataFrame({"x": x, "y": np.where(x > 0, "yes", "no")}).to_csv(train, index=False)
    pd.DataFrame({"x": -np.abs(rng.normal(size=40)), "y": "no"}).to_csv(test, index=False)
    result = run_cli(["task=classification", "data=csv", f"data.path={train}", f"data.test_path={test}",
                      "data.target=y", "trainer.max_epochs=3", "optimizer.lr=0.05", *SHORT_RUN], store)
    run = finished_run(store, result)
    metrics = run.data.metrics
    assert metrics["test/acc"] == 1.0 and "test/acc_ci_low" in metrics, metrics  # no row predicted positive
    assert not [k for k in metrics if k.startswith(("test/auroc", "test/ap", "test/f1"))], metrics
    assert "val/auroc" in metrics  # the validation split holds both classes
    output = result.stdout + result.stderr
    assert "Note: test/ap, test/auroc, test/f1 not logged: undefined on these test rows (ap needs rows of both " \
        "classes, or of two classes at least: on rows of one class it is 1 whatever the model; auroc needs rows of " \
        "both classes, or of two classes at least; binary f1 needs a row of the positive class or a prediction of " \
        "it: with neither it is 0/0)" in output, output[-3000:]
    assert "test/auroc=" not in output and "test/acc=" in output
    # every test row positive: ap was 1.0 [1.0, 1.0] whatever the model scored (a 3-class model's too)
    import torch

    from pipeline.tasks.intervals import binary as weighted_binary, bootstrap
    from pipeline.tasks.metrics import binary, multiclass

    scores = torch.tensor([0.9, 0.2, 0.6, 0.4])
    assert np.isnan(float(binary(scores, torch.ones(4, dtype=torch.long))["ap"]))
    assert np.isnan(float(multiclass(torch.softmax(torch.randn(4, 3), -1), torch.full((4,), 2), 3)["ap"]))
    assert "ap" not in bootstrap(weighted_binary(scores.numpy(), np.ones(4, dtype=np.int64)), 4, 200)

    flat = store["tmp"] / "flat.csv"
    pd.DataFrame({"x": rng.normal(size=30), "price": 5.0}).to_csv(flat, index=False)
    houses_csv = store["tmp"] / "houses.csv"
    x = rng.normal(size=200)
    pd.DataFrame({"x": x, "price": 3 * x + 5}).to_csv(houses_csv, index=False)
    result = run_cli(["task=regression", "data=csv", f"data.path={houses_csv}", f"data.test_path={flat}",
                      "data.target=price", "trainer.max_epochs=2", "trainer.enable_progress_bar=false", "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "Note: test/r2 not logged: undefined on these test rows (r2 needs targets that vary)" in output
    assert "test/r2=" not in output and "test/rmse=" in output, output[-2000:]


def test_binary_f1_without_a_positive_row_or_prediction_is_left_out_and_said_not_logged_as_0(store):
    """Test rows without a positive and a model predicting none: f1 is 0/0, and was logged and printed as
    ``test/f1=0.0000 [0.0000, 0.0000]`` beside ap and auroc, said undefined; it is left out and said as they are,
    and pipeline-eval and pipeline-compare take the run without it. f1 where it is defined is what it was."""
    rng = np.random.default_rng(0)
    rare = store["tmp"] / "rare.csv"
    y = np.zeros(5000, dtype=int)
    y[17] = 1
    pd.DataFrame({"a": rng.normal(size=5000), "b": rng.normal(size=5000), "y": y}).to_csv(rare, index=False)
    result = run_cli(["task=classification", "data=csv", f"data.path={rare}", "data.target=y", "trainer.max_epochs=2",
                      *SHORT_RUN], store)
    run = finished_run(store, result)
    metrics = run.data.metrics
    assert metrics["test/acc"] == 1.0 and not [k for k in metrics if k.startswith("test/f1")], metrics
    assert "val/f1" in metrics  # validation counts an undefined metric as 0, as before
    output = result.stdout + result.stderr
    assert "Note: test/ap, test/auroc, test/f1 not logged: undefined on these test rows (" in output, output[-3000:]
    assert "binary f1 needs a row of the positive class or a prediction of it: with neither it is 0/0" in output
    assert "test/f1=" not in output and "test/acc=1.0000" in output, output[-3000:]
    from pipeline.cli.compare import main as compare

    code, stdout, stderr = eval_cli([run.info.run_id, "--tracking-uri", store["uri"], "--output-dir",
                                     str(store["tmp"] / "evaluation")])
    assert code == 0 and "test/f1=" not in stdout and "test/f1 not logged" in stdout, stdout[-2000:] + stderr[-2000:]
    [evaluation] = [r for r in runs_in(store) if r.data.tags.get("evaluation_of") == run.info.run_id]
    assert "test/acc" in evaluation.data.metrics and "test/f1" not in evaluation.data.metrics
    code, stdout, stderr = _cli(compare, ["--tracking-uri", store["uri"], "--output", str(store["tmp"] / "cmp")])
    assert code == 0, stderr[-2000:]
    code, stdout, stderr = _cli(compare, ["--paired", run.info.run_id, run.info.run_id, "--tracking-uri", store["uri"]])
    assert code == 0 and "acc" in stdout, stdout[-2000:] + stderr[-2000:]

    # f1 where it is defined: 2 TP / (2 TP + FP + FN), as before and as scikit-learn's, also on the bootstrap's rows
    import torch
    from sklearn.metrics import f1_score

    from pipeline.tasks.intervals import binary as weighted_binary
    from pipeline.tasks.metrics import binary

    scores, targets = rng.random(200), (rng.random(200) < 0.3).astype(np.int64)
    expected = f1_score(targets, scores > 0.5)
    assert float(binary(torch.tensor(scores), torch.tensor(targets))["f1"]) == pytest.approx(expected, abs=1e-6)
    assert weighted_binary(scores, targets)(np.ones((1, 200)))["f1"][0] == pytest.approx(expected, abs=1e-12)
    negatives = np.zeros(200, dtype=np.int64)
    assert float(binary(torch.tensor(scores), torch.tensor(negatives))["f1"]) == 0.0  # false positives: defined, 0
    assert np.isnan(float(binary(torch.tensor(scores * 0.4), torch.tensor(negatives))["f1"]))


def test_a_monitored_metric_undefined_on_the_validation_rows_is_said_once(store):
    """2 positives in 60 rows: the 5 validation rows hold none, so val/auroc is undefined there and counts as 0 for
    the checkpoint and early stopping, which then choose arbitrarily. That used to go unsaid."""
    rng = np.random.default_rng(1)
    y = np.zeros(60, dtype=int)
    y[[3, 40]] = 1
    path = store["tmp"] / "tiny.csv"
    pd.DataFrame(rng.normal(size=(60, 3)) + y[:, None], columns=["a", "b", "c"]).assign(label=y).to_csv(path, index=False)
    common = ["task=classification", "data=csv", f"data.path={path}", "data.target=label", "trainer.max_epochs=4",
              "trainer.enable_progress_bar=false", "logger=none"]
    result = run_cli([*common, "task.monitor=val/auroc", "task.mode=max"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "5 validation" in output, output[-2000:]
    said = "val/auroc is undefined on the validation rows (auroc needs rows of both classes, or of two classes at " \
        "least) and counts as 0 there: the checkpoint tested and early stopping, chosen by it, are then arbitrary; " \
        "select by task.monitor=val/loss task.mode=min, or hold out more rows (data.val_fraction)"
    assert output.count(said) == 1, output[-3000:]
    result = run_cli(common, store)  # val/acc, the default, is defined on rows of one class
    assert result.returncode == 0 and "is undefined on the validation rows" not in result.stdout + result.stderr


def test_few_valued_whole_numbers_read_as_categories_and_far_out_cells_are_said(store):
    """A column of hours 0..9 became categories without a word (a linear model then has no slope for it); a cell of
    1e30 in an income column made its standard deviation ~1e28, so every other row of it standardised to ~0."""
    rng = np.random.default_rng(0)
    hours = rng.integers(0, 10, 200)
    income = rng.lognormal(10, 1, 200)
    income[5] = 1e30
    path = store["tmp"] / "hours.csv"
    pd.DataFrame({"hours": hours, "income": income, "score": 3 * hours + 2 + rng.normal(0, 0.5, 200)}).to_csv(
        path, index=False)
    result = run_cli_in_process(["task=regression", "data=csv", f"data.path={path}", "data.target=score",
                                 "trainer.max_epochs=1", "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "data: read as categories (whole numbers with at most data.max_integer_categories=10 distinct values: one " \
        "input per value, no slope): 'hours' (10 values); read one as a number with data.numeric=[<name>]" in output
    assert re.search(r"data: column 'income' holds values far from the rest \(e\.g\. 1e\+30\): its standard deviation "
                     r"\S+ is \S+ times the spread of its middle half .*data\.numeric_transform=quantile", output), output
    quiet = run_cli_in_process(["task=regression", "data=csv", f"data.path={path}", "data.target=score",
                                "data.numeric=[hours]", "data.numeric_transform=quantile", "trainer.max_epochs=1",
                                "logger=none"], store)
    assert quiet.returncode == 0 and "read as categories" not in quiet.stderr and "far from" not in quiet.stderr
    assert "data.target:" not in output
    # a typo in the target (a score of 1e6 among scores near 20): the loss and the RMSE were mostly that row's,
    # without a word
    scores = pd.read_csv(path)
    scores.loc[0:5, "score"] = 1e6  # some in the training rows, whatever the split
    scores.drop(columns="income").to_csv(path, index=False)
    typo = run_cli_in_process(["task=regression", "data=csv", f"data.path={path}", "data.target=score",
                               "trainer.max_epochs=1", "logger=none", "data.seed=1"], store)
    assert typo.returncode == 0, typo.stderr[-3000:]
    assert re.search(r"data\.target: the training rows' target holds values far from the rest \(e\.g\. 1e\+06\): its "
                     r"standard deviation \S+ is \S+ times the spread of its middle half .*a unit or a typo\?",
                     typo.stdout + typo.stderr), typo.stdout + typo.stderr


def test_labels_that_differ_only_by_case_are_said_not_merged(store):
    path = store["tmp"] / "cased.csv"
    labels = ["yes", "no"] * 30 + ["Yes", "NO.", "No"]
    path.write_text(table_text("a,b,label", [f"{i * 0.37:.2f},{'ab'[i % 2]},{label}" for i, label in enumerate(labels)]))
    result = run_cli_in_process(["data=csv", f"data.path={path}", "data.target=label", "trainer.max_epochs=1",
                                 "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "differ only by case (or case and trailing punctuation) are separate classes: 'NO.' (1 rows), 'No' (1 rows), " \
        "'no' (30 rows); 'Yes' (1 rows), 'yes' (30 rows)" in output, output[-3000:]


def test_an_integer_per_row_named_like_an_identifier_is_left_out(store):
    """Random unique integers named ``user_id`` say nothing about the label (they would be an input of pure
    noise); the same kind of column named ``visits`` is a measurement and stays."""
    rng = np.random.default_rng(0)
    ids, visits = rng.choice(10**6, size=60, replace=False), rng.choice(10**4, size=60, replace=False)
    path = store["tmp"] / "users.csv"
    path.write_text(table_text("user_id,visits,b,label", [f"{i},{v},{'ab'[k % 2]},{k % 2}"
                                                           for k, (i, v) in enumerate(zip(ids, visits))]))
    result = run_cli_in_process(["data=csv", f"data.path={path}", "data.target=label", "trainer.max_epochs=1",
                                 "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "left out 'user_id' (a different integer per row, named like an identifier)" in output, output[-3000:]
    assert "'visits'" not in output.split("left out", 1)[1].split("\n", 1)[0]


def test_a_column_with_one_value_is_left_out_unless_named_in_data_features(store):
    """A column holding one value in every training row (a site code, a version, a flag never set) was kept: a
    one-level categorical (an embedding) or a zero-variance number, and a required column of the model's signature.
    It is left out with a notice naming it and the key that keeps it; data.features naming it keeps it, without one.
    pipeline-predict and the logged model still take raw rows that hold it."""
    rng = np.random.default_rng(0)
    score = rng.normal(size=80).round(3)
    path = store["tmp"] / "constant.csv"
    path.write_text(table_text("score,site,version,flag,label", [
        f"{s},A,2.5,{'true'},{int(s > 0)}" for s in score]))
    common = ["data=csv", f"data.path={path}", "data.target=label", "trainer.max_epochs=1"]
    result = run_cli([*common, *SHORT_RUN], store)
    run = finished_run(store, result)
    notice = [line for line in (result.stdout + result.stderr).splitlines() if "one value throughout" in line]
    assert len(notice) == 1 and "left out 'site' ('A' in every row), 'version' ('2.5' in every row), 'flag' " \
        "('True' in every row): one value throughout, nothing to learn from; bring one back with " \
        "data.categorical=[<name>] (or data.numeric=[<name>])" in notice[0], result.stderr[-3000:]
    model = load_pyfunc(store, run.info.run_id)
    assert [c["name"] for c in model.metadata.get_input_schema().to_dict()] == ["score"]
    output = store["tmp"] / "predictions.csv"
    code, _, stderr = predict_cli([run.info.run_id, "--input", str(path), "--output", str(output),
                                   "--tracking-uri", store["uri"]])
    assert code == 0, stderr[-3000:]
    assert len(pd.read_csv(output)) == 80
    assert len(model.predict(pd.read_csv(path))) == 80

    named = run_cli_in_process([*common, "data.features=[score,site]", "logger=none"], store)
    assert named.returncode == 0, named.stderr[-3000:]
    assert "one value throughout" not in named.stdout + named.stderr


def test_reading_a_large_table_is_said_as_it_starts(store, monkeypatch):
    """A 1M-row CSV printed nothing for ~11 s before the data line: a file over LARGE_TABLE_BYTES (50 MB; lowered
    here) is named, with its size, as its reading starts, before the data line; a smaller one is not."""
    import pipeline.data.tabular

    path = store["tmp"] / "big.csv"
    path.write_text(table_text("a,b,label", [f"{i * 0.37:.2f},{'ab'[i % 2]},{i % 2}" for i in range(200)]))
    common = ["data=csv", f"data.path={path}", "data.target=label", "trainer.max_epochs=1", "logger=none"]
    monkeypatch.setattr(pipeline.data.tabular, "LARGE_TABLE_BYTES", path.stat().st_size - 1)
    result = run_cli_in_process(common, store)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("Data: ")]
    assert lines[0] == "Data: reading big.csv (0 MB) ..." and lines[1].startswith("Data: csv big.csv "), lines
    monkeypatch.setattr(pipeline.data.tabular, "LARGE_TABLE_BYTES", path.stat().st_size)
    result = run_cli_in_process(common, store)
    assert result.returncode == 0 and "Data: reading" not in result.stdout, result.stdout[-3000:]


def test_numbers_written_with_a_unit_are_said_to_be_read_as_categories(store):
    """``172cm`` became a categorical column of 50 values (22 kept) without a word, and ``72.3 kg`` was left out as
    "identifier-like, free text or empty"."""
    rng = np.random.default_rng(0)
    height, weight = rng.integers(150, 200, 200), rng.normal(70, 10, 200).round(1)
    path = store["tmp"] / "units.csv"
    pd.DataFrame({"height": [f"{v}cm" for v in height], "weight": [f"{v} kg" for v in weight],
                  "y": height * 0.5 + rng.normal(0, 1, 200)}).to_csv(path, index=False)
    result = run_cli_in_process(["task=regression", "data=csv", f"data.path={path}", "data.target=y",
                                 "trainer.max_epochs=1", "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert re.search(r"data: read as categories, one input per value with no order between them: 'height' \(e\.g\. "
                     r"'\d+cm'\), numbers written with a unit; write the numbers alone", output), output[-3000:]
    assert re.search(r"left out 'weight' \(\d+ distinct values in 200 rows: numbers written with a unit, e\.g\. "
                     r"'[\d.]+ kg'; write the numbers alone to read them\)", output), output[-3000:]


def test_a_category_written_as_a_missing_value_code_is_said_to_be_read_as_missing(store):
    """'NA' for North America (40 % of the rows) and 'None' for no pool became missing values without a word: they
    share the unseen/missing code with every value new at prediction, which then gets North America's effect."""
    rng = np.random.default_rng(0)
    region = rng.choice(["NA", "EU", "AS"], size=300, p=[0.4, 0.3, 0.3])
    pool = rng.choice(["None", "Gd"], size=300)
    path = store["tmp"] / "regions.csv"
    pd.DataFrame({"region": region, "pool": pool, "x": rng.normal(size=300),
                  "y": (region == "NA") * 3.0 + rng.normal(size=300)}).to_csv(path, index=False)
    result = run_cli_in_process(["task=regression", "data=csv", f"data.path={path}", "data.target=y",
                                 "trainer.max_epochs=1", "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    for name, word in (("region", "NA"), ("pool", "None")):
        assert re.search(rf"data: column '{name}': \d+ of its 300 cells are written '{word}', read as a missing value "
                         rf"\(the unseen/missing category, shared with new values at prediction\); if '{word}' is a "
                         rf"value here", output), output[-3000:]


def test_a_validation_split_of_a_few_rows_is_said_to_choose_the_checkpoint(store):
    """15 rows gave 11 train / 1 validation / 3 test rows, and that one row chose the checkpoint tested, without a
    word."""
    rng = np.random.default_rng(0)
    path = store["tmp"] / "tiny.csv"
    pd.DataFrame({"x": rng.normal(size=15), "y": rng.integers(0, 2, 15)}).to_csv(path, index=False)
    result = run_cli_in_process(["data=csv", f"data.path={path}", "data.target=y", "trainer.max_epochs=1",
                                 "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("11 train / 1 validation / 3 test rows; the checkpoint tested and early stopping are chosen on only 1 "
            "validation row (one is 100 % of val/acc): hold out more with data.val_fraction") in result.stdout


def test_record_numbers_named_otherwise_than_id_are_left_out(store):
    """A file sorted by its label, numbered, shuffled, with the numbers kept in a column named ``record`` (or ``No``,
    ``CaseNo``): they were a numeric input that gave test auroc 0.99 on labels of pure noise."""
    rng = np.random.default_rng(1)
    label = np.sort(rng.integers(0, 2, size=200))
    frame = pd.DataFrame({"record": 1000 + np.arange(200), "No": np.arange(200) * 3, "CaseNo": 7 + np.arange(200),
                          "x": rng.normal(size=200), "label": label}).sample(frac=0.8, random_state=0)
    path = store["tmp"] / "records.csv"
    frame.to_csv(path, index=False)
    result = run_cli_in_process(["data=csv", f"data.path={path}", "data.target=label", "trainer.max_epochs=1",
                                 "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    [line] = [line for line in (result.stdout + result.stderr).splitlines() if "left out" in line]
    for name in ("record", "No", "CaseNo"):
        assert f"'{name}' (a different integer per row, named like an identifier)" in line, line
    assert "'x'" not in line


def test_a_test_file_or_new_rows_unlike_the_training_rows_are_said_to_be(store):
    """Said of a test file (data.test_path; pipeline-eval of one) as pipeline-predict says it of new rows: categories
    spelled otherwise (test acc 0.73 for 0.95, without a word in training); numbers written with a decimal comma and
    read as thousands, 1000 times the training values (r2 -14803673, without a word anywhere); a column left empty,
    read as the training median. 'Zürich' written in decomposed Unicode (as macOS exports) is the same category."""
    import unicodedata

    rng = np.random.default_rng(0)

    def rows(count: int) -> pd.DataFrame:
        weight, colour = rng.uniform(50, 99, size=count).round(3), rng.choice(["Red", "Blue", "Zürich"], size=count)
        return pd.DataFrame({"weight": weight, "colour": colour,
                             "y": np.where((weight > 75) ^ (colour == "Red"), "yes", "no")})

    train, test, new = store["tmp"] / "train.csv", store["tmp"] / "test.csv", rows(50).drop(columns="y")
    rows(300).to_csv(train, index=False)
    tested = rows(100)
    tested.assign(colour=tested["colour"].str.upper(),
                  weight=[f"{v:.3f}".replace(".", ",") for v in tested["weight"]]).to_csv(test, sep=";", index=False)
    result = run_cli_in_process(["data=csv", f"data.path={train}", f"data.test_path={test}", "data.target=y",
                                 "trainer.max_epochs=2", *SHORT_RUN], store)
    run = finished_run(store, result)
    said = [line.split(" - ", 1)[-1] for line in (result.stdout + result.stderr).splitlines() if "data.test_path: " in line]
    assert len(said) == 2, result.stderr[-3000:]
    assert said[0].startswith(f"data.test_path: {test}: column 'colour': 100 of its 100 values are categories the "
                              "model's training rows did not have (e.g. '"), said
    assert said[1].startswith(f"data.test_path: {test}: column 'weight': 100 of its 100 values lie more than 10 "
                              "standard deviations from the training rows' mean, "), said
    assert "written '" in said[1] and "another unit, another decimal mark or a typo?" in said[1], said
    evaluated = run_cli([run.info.run_id, f"data.test_path={test}", "--tracking-uri", store["uri"],
                         "--output-dir", str(store["tmp"] / "evaluation")], module="pipeline.cli.eval")
    logged = evaluated.stdout + evaluated.stderr
    assert evaluated.returncode == 0 and sum("data.test_path: " in line for line in logged.splitlines()) == 2, logged

    def predict(frame: pd.DataFrame, name: str) -> tuple[pd.DataFrame, list[str]]:
        frame.to_csv(store["tmp"] / f"{name}.csv", index=False)
        code, _, stderr = predict_cli([run.info.run_id, "--input", str(store["tmp"] / f"{name}.csv"), "--output",
                                       str(store["tmp"] / f"{name}_answers.csv"), "--tracking-uri", store["uri"]])
        assert code == 0, stderr[-3000:]
        return (pd.read_csv(store["tmp"] / f"{name}_answers.csv"),
                [line for line in stderr.splitlines() if line.startswith("Warning: column")])

    answers, warned = predict(new, "new")
    assert warned == []
    _, warned = predict(new.assign(weight=""), "empty")
    assert warned == [f"Warning: column 'weight': 50 of its 50 cells are missing; the model reads them as the training "
                      f"rows' median, {warned[0].rsplit(', ', 1)[1]}"] and re.search(r"median, [\d.]+$", warned[0])
    decomposed, warned = predict(new.assign(colour=[unicodedata.normalize("NFD", c) for c in new["colour"]]), "nfd")
    assert warned == [] and decomposed.equals(answers)


def test_consecutive_years_are_an_input_and_a_row_index_is_left_out(store):
    """A year per row (1950..2020) was left out as "a row number"; a row index counts from 0 or 1."""
    rng = np.random.default_rng(0)
    years = np.arange(1950, 2021)
    path = store["tmp"] / "years.csv"
    pd.DataFrame({"row": np.arange(len(years)), "year": years, "pop": rng.normal(size=len(years)),
                  "gdp": 3.0 * (years - 1950) + rng.normal(size=len(years))}).to_csv(path, index=False)
    result = run_cli_in_process(["task=regression", "data=csv", f"data.path={path}", "data.target=gdp",
                                 "trainer.max_epochs=1", "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    left_out = [line for line in (result.stdout + result.stderr).splitlines() if "left out" in line]
    assert left_out and "'row' (a row number)" in left_out[0] and "'year'" not in " ".join(left_out), left_out


def test_the_index_pandas_writes_into_a_saved_split_is_left_out_not_learned(store):
    """A split saved with pandas' default ``to_csv(index=True)`` starts with a column without a name (pandas reads
    it as ``Unnamed: 0``): the rows' numbers before shuffling, out of order and not from 0, so not "a row number".
    It was a numeric input, and on rows indexed by class it gave a model of noise a test accuracy near 1."""
    rng = np.random.default_rng(14)
    noise = {"x1": rng.normal(size=800), "x2": rng.normal(size=800)}
    rows = pd.DataFrame({**noise, "y": np.repeat(["no", "yes"], 400)}).sample(frac=1, random_state=0)
    train, test = store["tmp"] / "split_train.csv", store["tmp"] / "split_test.csv"
    rows.iloc[:600].to_csv(train)
    rows.iloc[600:].to_csv(test)
    result = run_cli(["task=classification", "data=csv", f"data.path={train}", f"data.test_path={test}",
                      "data.target=y", "trainer.max_epochs=8", "optimizer.lr=0.05", *SHORT_RUN], store)
    run = finished_run(store, result)
    output = result.stdout + result.stderr
    assert "left out 'Unnamed: 0' (no name in the header: the row index pandas writes)" in output, output[-3000:]
    assert "bring one back with data.categorical=[<name>] (or data.numeric=[<name>])" in output
    assert run.data.metrics["test/acc"] < 0.7, run.data.metrics  # no signal in x1, x2: about a coin's toss
    # the model reads x1 and x2 only: new rows without the index are answered, by pipeline-predict and by MLflow
    model = load_pyfunc(store, run.info.run_id)
    assert [c["name"] for c in model.metadata.get_input_schema().to_dict()] == ["x1", "x2"]
    plain = store["tmp"] / "plain.csv"
    rows.iloc[600:].drop(columns="y").to_csv(plain, index=False)
    code, _, stderr = predict_cli([run.info.run_id, "--input", str(plain), "--output", str(store["tmp"] / "p.csv"),
                                   "--tracking-uri", store["uri"]])
    assert code == 0, stderr[-3000:]
    answered = pd.read_csv(store["tmp"] / "p.csv")
    by_mlflow = model.predict(pd.read_csv(plain))
    np.testing.assert_allclose(answered["probability_yes"], by_mlflow["probability_yes"], atol=1e-6)


def test_compressed_tables_train_and_predict_like_the_plain_files(people_run, store):
    """A gzipped training file with a .tsv.bz2 test file trains (the format is the extension before the
    compression's); pipeline-predict answers on a .csv.gz and a one-file .zip exactly as on the plain file."""
    import bz2
    import gzip
    import zipfile

    plain = people_run["test"]
    train_gz = store["tmp"] / "train.csv.gz"
    train_gz.write_bytes(gzip.compress(people_run["train"].read_bytes()))
    test_bz2 = store["tmp"] / "test.tsv.bz2"
    test_bz2.write_bytes(bz2.compress(plain.read_text().replace(",", "\t").encode()))
    result = run_cli_in_process(["data=csv", f"data.path={train_gz}", f"data.test_path={test_bz2}",
                                 "data.target=label", "trainer.max_epochs=1", "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "/ 300 test rows" in result.stdout, result.stdout[-2000:]

    gz = store["tmp"] / "new.csv.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    zipped = store["tmp"] / "new.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(plain, "new.csv")
        archive.writestr("__MACOSX/._new.csv", b"\x00\x05\x16\x07 Finder's resource fork")  # every zip Finder makes
    answers = []
    # the predictions of the compressed inputs written compressed too, in small batches
    for source, suffix in ((plain, ".csv"), (gz, ".csv.gz"), (zipped, ".csv.xz")):
        output = store["tmp"] / f"{source.name}.predictions{suffix}"
        code, _, stderr = predict_cli([people_run["run"].info.run_id, "--input", str(source), "--output", str(output),
                                       "--batch-size", "64", "--tracking-uri", people_run["store"]["uri"]])
        assert code == 0, (source, stderr[-3000:])
        assert not list(store["tmp"].glob(".*.partial"))
        answers.append(pd.read_csv(output, dtype={"prediction": str}))  # pandas decompresses by the extension
    assert len(answers[0]) == 300
    for answer in answers[1:]:
        pd.testing.assert_frame_equal(answer, answers[0])
    assert gzip.decompress((store["tmp"] / "new.csv.gz.predictions.csv.gz").read_bytes()).startswith(b"prediction,")
    code, _, stderr = predict_cli([people_run["run"].info.run_id, "--input", str(plain), "--output",
                                   str(store["tmp"] / "out.parquet.gz"), "--tracking-uri", people_run["store"]["uri"]])
    assert code == 2 and "unknown extension" in stderr and ".gz, .bz2, .xz" in stderr, stderr[-2000:]
    folder = store["tmp"] / "tables"  # the folder of the file given for the file: not "file not found"
    folder.mkdir()
    (folder / "people.csv.gz").write_bytes(gz.read_bytes())
    assert_refused(run_cli_in_process(["data=csv", f"data.path={folder}", "data.target=label"], store), store,
                   f"data.path={folder} is a folder; give the table's file (it holds people.csv.gz)")


def test_pipeline_predict_reads_and_writes_paths_in_the_home_folder(people_run, store, monkeypatch):
    """``--input '~/rows.csv'`` (quoted, or --input=~/..., which the shell leaves as written) was 'no such file',
    though data.path='~/...' trains."""
    monkeypatch.setenv("HOME", str(store["tmp"]))
    (store["tmp"] / "home_rows.csv").write_bytes(people_run["test"].read_bytes())
    code, _, stderr = predict_cli([people_run["run"].info.run_id, "--input", "~/home_rows.csv",
                                   "--output=~/home_predictions.csv", "--tracking-uri", people_run["store"]["uri"]])
    assert code == 0, stderr[-3000:]
    assert len(pd.read_csv(store["tmp"] / "home_predictions.csv")) == 300


def test_files_without_a_header_row_are_named_by_data_columns(people_run, store):
    """UCI's files come without a header row: the first row is taken for names, so the target is 'not in' the
    file, with the hint; data.columns names the columns, a test file and pipeline-predict's input are read the
    same way (with a header or without), and a line number in an error counts from the file's first line."""
    names = list(pd.read_csv(people_run["train"], nrows=0).columns)
    bare = {}
    for part in ("train", "test"):
        lines = people_run[part].read_text().splitlines(keepends=True)
        bare[part] = store["tmp"] / f"{part}.data"
        bare[part].write_text("".join(lines[1:]))
    refused = run_cli_in_process(["data=csv", f"data.path={bare['train']}", "data.target=label"], store)
    assert_refused(refused, store, "column 'label' not in", "first row looks like data",
                   f"name its {len(names)} columns in order with data.columns=[")
    repeated = store["tmp"] / "repeated.data"  # a first row of data whose values repeat: read as duplicate names
    repeated.write_text("1,2.5,1,0\n0,3.5,1,1\n1,1.5,0,0\n")
    assert_refused(run_cli_in_process(["data=csv", f"data.path={repeated}", "data.target=label"], store), store,
                   "duplicate column names: '1' (columns 1, 3) (its first row looks like data",
                   "name its 4 columns in order with data.columns=[")
    columns = f"data.columns=[{','.join(names)}]"
    result = run_cli_in_process(["data=csv", f"data.path={bare['train']}", f"data.test_path={bare['test']}", columns,
                                 "data.target=label", "trainer.max_epochs=1", "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "/ 300 test rows" in result.stdout, result.stdout[-2000:]
    sizes = re.search(r"([\d,]+) train / ([\d,]+) validation", result.stdout).groups()
    assert sum(int(n.replace(",", "")) for n in sizes) == 600  # no row lost to a header

    [checkpoint] = store["tmp"].glob("outputs*/checkpoints/best-*.ckpt")
    answers = []
    for source in (bare["test"], people_run["test"]):  # without and with the header row
        output = store["tmp"] / f"{source.name}.predictions.csv"
        code, _, stderr = predict_cli([str(checkpoint), "--input", str(source), "--output", str(output)])
        assert code == 0, (source, stderr[-3000:])
        answers.append(pd.read_csv(output, dtype={"prediction": str}))
    assert len(answers[0]) == 300
    pd.testing.assert_frame_equal(answers[0], answers[1])
    # new rows without a header row and without the label column (it was refused: 'expected N columns')
    unlabelled = store["tmp"] / "unlabelled.data"
    pd.read_csv(people_run["test"], dtype=str, keep_default_na=False).drop(columns="label").to_csv(
        unlabelled, index=False, header=False)
    output = store["tmp"] / "unlabelled.predictions.csv"
    code, _, stderr = predict_cli([str(checkpoint), "--input", str(unlabelled), "--output", str(output)])
    assert code == 0, stderr[-3000:]
    pd.testing.assert_frame_equal(pd.read_csv(output, dtype={"prediction": str}), answers[0])

    lines = bare["train"].read_text().splitlines(keepends=True)
    lines[5] = ",".join(["p-x", "seven", *lines[5].split(",")[2:]])  # the sixth line of a file without a header
    bare["train"].write_text("".join(lines))
    assert_refused(run_cli_in_process(["data=csv", f"data.path={bare['train']}", columns, "data.target=label"], store),
                   store, f"{bare['train']}:6:", "column 'score' holds 'seven'")
    parquet = store["tmp"] / "train.parquet"
    pd.read_csv(people_run["train"]).to_parquet(parquet)
    assert_refused(run_cli_in_process(["data=csv", f"data.path={parquet}", columns, "data.target=label"], store),
                   store, "data.columns names the columns of a CSV/TSV file without a header row")


def test_compressed_and_spreadsheet_files_that_cannot_be_read_are_refused(store):
    import gzip
    import zipfile

    table = table_text("a,b,label", GOOD).encode()
    truncated = store["tmp"] / "cut.csv.gz"
    truncated.write_bytes(gzip.compress(table)[:60])
    assert_refused(run_cli_in_process(["data=csv", f"data.path={truncated}", "data.target=label"], store), store,
                   str(truncated), "cannot be decompressed as gzip")
    two = store["tmp"] / "two.zip"
    with zipfile.ZipFile(two, "w") as archive:
        archive.writestr("train.csv", table)
        archive.writestr("test.csv", table)
    assert_refused(run_cli_in_process(["data=csv", f"data.path={two}", "data.target=label"], store), store,
                   str(two), "exactly one table", "holds 2 files: train.csv, test.csv")
    sheet = store["tmp"] / "table.xlsx"
    with zipfile.ZipFile(sheet, "w") as archive:  # what an .xlsx file is, without the workbook in it
        archive.writestr("[Content_Types].xml", "<Types/>")
    assert_refused(run_cli_in_process(["data=csv", f"data.path={sheet}", "data.target=label"], store), store,
                   str(sheet), "not a readable Excel workbook")
    other = store["tmp"] / "table.ods"
    other.write_bytes(b"PK\x03\x04")
    assert_refused(run_cli_in_process(["data=csv", f"data.path={other}", "data.target=label"], store), store,
                   str(other), "a .ods spreadsheet is not read", "save the sheet as .xlsx or CSV")
    packed = store["tmp"] / "table.parquet.gz"
    packed.write_bytes(gzip.compress(b"PAR1"))
    assert_refused(run_cli_in_process(["data=csv", f"data.path={packed}", "data.target=label"], store), store,
                   str(packed), "a compressed Parquet file is not read")


@pytest.mark.unit
def test_date_parts_are_read_in_the_time_as_written():
    from pipeline.data.preprocessing import date_number, date_part_labels, local_days

    written = pd.Series(["2024-01-05T13:00:00Z", "2024-01-05T23:59:59+01:00", "2024-12-31", "2024-06-15T00:00", "?"])
    days = local_days(written, frozenset(["?"]))
    assert date_part_labels(days, "month").tolist() == ["1", "1", "12", "6", None]
    assert date_part_labels(days, "weekday").tolist() == ["Fri", "Fri", "Tue", "Sat", None]
    assert date_part_labels(days, "hour").tolist() == ["13", "23", "0", "0", None]  # 22:59 in UTC
    assert date_number("2024-01-05T23:59:59+01:00") == pytest.approx(days[1] - 1 / 24)  # the day count is in UTC
    berlin = pd.Series(pd.to_datetime(["2024-07-01 08:30"]).tz_localize("Europe/Berlin"))  # a Parquet/Excel column
    assert date_part_labels(local_days(berlin), "hour").tolist() == ["8"]


@pytest.mark.unit
@pytest.mark.parametrize("decimal", [".", ","])
def test_a_column_of_many_written_numbers_and_dates_reads_as_one_cell_at_a_time(decimal):
    """From 64 distinct texts on, to_numbers reads prices, percentages and ISO timestamps in bulk (pyarrow's RE2,
    pandas' ISO parser): every value must equal what cell_number and date_number give one cell at a time, odd
    spellings (other zones, Unicode digits, a non-breaking space, dates pandas cannot hold) included."""
    import datetime
    import random

    from pipeline.data.preprocessing import cell_number, date_number, local_days, to_numbers

    rng, pick = np.random.default_rng(0), random.Random(0)
    suffixes = ["%", " %", " €", "\u00a0€"]  # a non-breaking space, as French exports write it
    cells = []
    for i in range(6000):
        value = float(rng.uniform(-1e7, 1e7)) * 10.0 ** int(rng.integers(-6, 3))
        moment = datetime.datetime(1700, 1, 1) + datetime.timedelta(seconds=float(rng.uniform(0, 560 * 365 * 86400)))
        written = [f"{value:,.2f}", f"{pick.choice(['', '-', '+'])}{pick.choice(['', '$', '€', '£'])}{abs(value):,.3f}",
                   f"{abs(value):.2f}{pick.choice(suffixes)}", f"{value:.3e}%", f"{int(value):,}",
                   moment.strftime(pick.choice(["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S",
                                                "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%SZ"]))
                   + pick.choice(["", "+05:30", "-02:00", "+0530", "+05"]),
                   pick.choice(["2024-02-30", "2024-01-05T24:00", "9999-12-31T23:59:59.999999", "0001-01-01",
                                "2024-01-05T13:45:00.1234567", "1,23", "$-5", "-$5", "+-5", "$5€", "5%$",
                                "\u0663,\u0664\u0665\u0666.5", "1_000", "abc", "?"])]
        cells.append(written[i % len(written)])
    if decimal == ",":
        cells = [c.translate(str.maketrans({",": ".", ".": ","})) if i % 3 else c for i, c in enumerate(cells)]
    column = pd.Series(cells, dtype=object)
    values, bad = to_numbers(column, frozenset(["?"]), decimal)
    one_by_one = np.array([np.nan if c == "?" else cell_number(c, decimal) for c in cells])
    np.testing.assert_array_equal(values, one_by_one)  # NaN where both are NaN, else bit for bit
    assert bad.tolist() == [c != "?" and np.isnan(v) for c, v in zip(cells, one_by_one)]
    assert 0.5 < np.isfinite(values).mean() < 0.95  # most cells are numbers, some are not
    local = local_days(column, frozenset(["?"]))
    np.testing.assert_array_equal(local, [np.nan if c == "?" else date_number(c, local=True) for c in cells])
    assert np.isfinite(local).sum() > 500
    # and the bulk readers did read them (pyarrow is installed with pandas' Parquet support)
    from pipeline.data.preprocessing import _plain_dates, _written_numbers

    texts = np.array(cells, dtype=object)
    assert np.isfinite(_plain_dates(texts)).sum() > 250
    assert np.isfinite(_written_numbers(texts)).sum() > (2000 if decimal == "." else 300)


@pytest.mark.unit
def test_tree_bins_fall_where_the_target_changes_and_survive_the_json_state():
    from pipeline.data.preprocessing import TablePreprocessor

    rng = np.random.default_rng(0)
    age = rng.uniform(0, 100, 2000)
    frame = pd.DataFrame({"age": age, "noise": rng.normal(size=2000)})
    target = ((age > 30) & (age < 70)).astype(int)  # two thresholds quantile bins know nothing about
    fitted = TablePreprocessor({"age": "numeric", "noise": "numeric"}, "piecewise_tree", piecewise_bins=4).fit(
        frame, target, classification=True)
    edges = fitted.numeric["age"]["edges"]
    assert any(abs(e - 30) < 1 for e in edges) and any(abs(e - 70) < 1 for e in edges), edges
    assert edges[0] == pytest.approx(age.min()) and edges[-1] == pytest.approx(age.max())
    reloaded = TablePreprocessor.from_dict(fitted.to_dict())
    assert np.array_equal(reloaded.transform_numpy(frame), fitted.transform_numpy(frame))
    with pytest.raises(ValueError, match="needs the training rows' target"):
        TablePreprocessor({"age": "numeric"}, "piecewise_tree").fit(frame)


# ----- the bundled and synthetic tables: their models read named columns too --------------------------------------
@pytest.mark.unit
@pytest.mark.parametrize("name", ["Diabetes", "BreastCancer", "Wine"])
def test_bundled_tables_read_scikit_learns_columns_into_exactly_the_training_inputs(name):
    """Named as scikit-learn's loader names them (written out in the code, which does not import scikit-learn), and
    the adapter, through its JSON state, turns scikit-learn's own DataFrame into the very tensors training used."""
    import sklearn.datasets
    import torch

    import pipeline.data.tabular as tabular
    from pipeline.data.numeric_inputs import NumericColumns

    cls = getattr(tabular, name)
    frame = getattr(sklearn.datasets, cls.loader)(as_frame=True).frame
    assert list(cls.columns) == [str(c) for c in frame.columns if c != "target"]
    data, raw = cls(seed=3), cls(seed=3, standardize=False)
    data.setup("fit")
    raw.setup("fit")
    adapter = NumericColumns.from_dict(data.raw_input_adapter().to_dict())
    rows = pd.DataFrame(raw.test_split.x.double().numpy(), columns=list(cls.columns))
    assert torch.equal(adapter.transform(rows[rows.columns[::-1]].assign(extra="x")), data.test_split.x)
    assert adapter.input_example().shape == (2, len(cls.columns))


@pytest.mark.unit
def test_synthetic_tables_name_their_columns_x():
    from pipeline.data.tabular import SyntheticBinary, SyntheticLinear

    line = SyntheticLinear(seed=0, n_samples=50)
    line.setup("fit")
    adapter = line.raw_input_adapter()
    assert adapter.input_schema() == [("x", "numeric")] and adapter.mean is None  # y = wx + b on x as it is
    assert adapter.transform(pd.DataFrame({"x": [0.5, "1.5"]})).tolist() == [[0.5], [1.5]]
    binary = SyntheticBinary(seed=0, n_samples=50, n_features=3)
    binary.setup("fit")
    assert [c for c, _ in binary.raw_input_adapter().input_schema()] == ["x1", "x2", "x3"]


# ----- the real thing: UCI Adult with its official test split -------------------------------------------------------
@pytest.mark.slow
def test_adult_as_distributed_trains_and_its_model_reads_the_raw_test_file(tmp_path, migrated_store_db, real_data_dir,
                                                                          caplog):
    store = new_store(tmp_path, migrated_store_db)
    result = run_cli(["task=classification", "data=csv", f"data.path={real_data_dir / 'adult' / 'adult.data'}",
                      f"data.test_path={real_data_dir / 'adult' / 'adult.test'}", "data.target=Y",
                      "data.numeric_transform=piecewise_tree",  # the benchmark row's encoding, fitted and reloaded
                      "trainer.max_epochs=3", "data.batch_size=256", *SHORT_RUN], store)
    run = finished_run(store, result)
    output = result.stdout + result.stderr
    assert "'>50K' (7841 rows) and '>50K.' (3846 rows) as '>50K'" in output, output[-3000:]
    assert run.data.metrics["test/acc"] > 0.83, run.data.metrics  # 3 epochs; the benchmark row trains longer

    predictions = tmp_path / "adult_predictions.csv"
    code, _, stderr = predict_cli([run.info.run_id, "--input", str(real_data_dir / "adult" / "adult.test"),
                                   "--output", str(predictions), "--tracking-uri", store["uri"]])
    assert code == 0, stderr[-3000:]
    predicted = pd.read_csv(predictions)["prediction"].to_numpy()
    raw = pd.read_csv(real_data_dir / "adult" / "adult.test", skipinitialspace=True)  # '?' and all
    truth = raw["Y"].str.rstrip(".").to_numpy()
    assert len(predicted) == 16281
    assert float((predicted == truth).mean()) == pytest.approx(run.data.metrics["test/acc"], abs=1e-6)
    by_mlflow = load_pyfunc(store, run.info.run_id).predict(raw.head(2000))
    assert (by_mlflow["prediction"].to_numpy() == predicted[:2000]).all()
    # pipeline-eval on the run's own test split reads adult.test alone, '>50K.' and all: the run's metrics (it was
    # refused: "label '<=50K.' in column 'Y' is not a class the model was trained on")
    code, _, stderr = eval_cli([run.info.run_id, "--tracking-uri", store["uri"], "--output-dir", str(tmp_path / "eval")])
    assert code == 0, stderr[-3000:]
    assert "read as that class: '<=50K.' as '<=50K'; '>50K.' as '>50K'" in caplog.text, caplog.text[-3000:]
    [evaluation] = [r for r in runs_in(store) if r.data.tags.get("evaluation_of") == run.info.run_id]
    assert evaluation.data.metrics["test/acc"] == run.data.metrics["test/acc"]


# ----- rows that belong together (data.groups) ----------------------------------------------------------------
def visits(patients: int = 60, per_patient: int = 10, seed: int = 0) -> pd.DataFrame:
    """Repeated measurements: each patient has a feature signature of their own and a random label, so the
    label follows from the features only by recognising the patient (what a split that leaks groups rewards)."""
    rng = np.random.default_rng(seed)
    rows = []
    for patient in range(patients):
        signature, label = rng.normal(0, 3, 3), int(rng.integers(0, 2))
        for _ in range(per_patient):
            x = signature + rng.normal(0, 0.3, 3)
            rows.append({"patient": f"P{patient:03d}", "x1": x[0], "x2": x[1], "x3": x[2], "y": label})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("folds", [None, 5])
def test_data_groups_keep_each_groups_rows_in_one_split(tmp_path, folds):
    from pipeline.data.tabular import CsvData

    path = tmp_path / "visits.csv"
    visits().to_csv(path, index=False)
    module = CsvData(path=str(path), target="y", task_kind="classification", groups="patient", cv_folds=folds,
                     fold=1 if folds else 0)
    module.setup("fit")
    raw = pd.read_csv(path)
    # the splits' rows, back to their patients: x is standardised, so match rows on the raw x1 values
    patient_of = dict(zip(np.round(raw["x1"], 6), raw["patient"]))
    mean, std = module.preprocessor.numeric["x1"]["mean"], module.preprocessor.numeric["x1"]["std"]
    held = {}
    for name in ("train_split", "val_split", "test_split"):
        x1 = getattr(module, name).x[:, 0].double().numpy() * std + mean
        held[name] = {patient_of[v] for v in np.round(x1, 6) if v in patient_of}
        assert held[name], name
    assert not held["train_split"] & held["test_split"] and not held["train_split"] & held["val_split"]
    assert not held["val_split"] & held["test_split"]
    assert len(module.test_split) == 120 and sorted(held["train_split"] | held["val_split"] | held["test_split"]) == \
        sorted(raw["patient"].unique())
    assert module.how_split() == ["rows of one 'patient' stay in one split (data.groups; 60 groups)"]
    assert "patient" not in module.preprocessor.columns  # the group is not an input


def test_data_groups_through_the_cli_score_the_unseen_patients_and_refuse_bad_keys(store, tmp_path):
    path = tmp_path / "visits.csv"
    table = visits()
    table.to_csv(path, index=False)
    common = ["task=classification", "data=csv", f"data.path={path}", "data.target=y", "trainer.max_epochs=30",
              "logger=none"]

    def accuracy(result):
        assert result.returncode == 0, result.stderr[-3000:]
        return float(re.search(r"test/acc=([\d.]+)", result.stdout).group(1))

    leaked = run_cli_in_process(common, store)
    grouped = run_cli_in_process([*common, "data.groups=patient"], store)
    # rows of a patient on both sides of the split: the model recognises the patient; held out whole: it cannot
    assert accuracy(leaked) >= 0.95 and accuracy(grouped) <= 0.75, (leaked.stdout[-500:], grouped.stdout[-500:])
    assert "rows of one 'patient' stay in one split (data.groups; 60 groups)" in grouped.stdout

    # three sites: the test split takes one whole site, far from 20 % of the rows: said
    table.assign(site=[f"s{int(p[1:]) % 3}" if isinstance(p, str) and p[1:].isdigit() else "s0"
                       for p in table["patient"]]).to_csv(tmp_path / "sites.csv", index=False)
    sites = run_cli_in_process([*common, f"data.path={tmp_path / 'sites.csv'}", "data.groups=site",
                                "trainer.max_epochs=1"], store)
    assert sites.returncode == 0, sites.stderr[-3000:]
    assert re.search(r"data.groups: a held-out split of \S+ takes 1 of 3 groups, \d+ % of the rows where 20 % were asked",
                     sites.stdout + sites.stderr), (sites.stdout + sites.stderr)[-3000:]

    table.loc[7, "patient"] = ""
    table.to_csv(tmp_path / "gap.csv", index=False)
    for overrides, says in (
        (["data.groups=patiant"], "data.groups: column 'patiant' not in"),
        (["data.groups=y"], "data.groups: column 'y' is the target"),
        (["data.groups=patient", "data.features=[patient,x1]"], "data.groups='patient' says which rows belong together"),
        (["data.groups=patient", "data.cv_folds=80"], "data.groups: 60 groups cannot fill data.cv_folds=80 folds"),
        (["data.groups=patient", f"data.path={tmp_path / 'gap.csv'}"], f"{tmp_path / 'gap.csv'}:9: no group in column"),
    ):
        refused = run_cli_in_process([*common, *overrides], store)
        assert refused.returncode == 2 and says in error_line(refused.stderr), (overrides, refused.stderr[-2000:])


# ----- splits in time (data.order_by) -------------------------------------------------------------------------
def daily_sales(days: int = 300, seed: int = 0) -> pd.DataFrame:
    """A rising trend with a weekend effect, written in shuffled order (as exports often are); two rows a day."""
    rng = np.random.default_rng(seed)
    dates = np.repeat(pd.date_range("2023-01-01", periods=days).strftime("%Y-%m-%d").to_numpy(), 2)
    t = np.repeat(np.arange(days), 2)
    frame = pd.DataFrame({"date": dates, "promo": rng.integers(0, 2, 2 * days),
                          "sales": 100 + 0.2 * t + rng.normal(0, 5, 2 * days)})
    return frame.sample(frac=1, random_state=1).reset_index(drop=True)


def test_data_order_by_tests_on_the_latest_rows_and_validates_on_the_latest_before_them(tmp_path):
    from pipeline.data.tabular import CsvData

    path = tmp_path / "sales.csv"
    daily_sales().to_csv(path, index=False)
    module = CsvData(path=str(path), target="sales", task_kind="regression", order_by="date")
    module.setup("fit")
    stats = module.preprocessor.numeric["date"]
    days = {name: getattr(module, name).x[:, 0].double().numpy() * stats["std"] + stats["mean"]
            for name in ("train_split", "val_split", "test_split")}
    # every test day after every validation day, after every training day; no day on two sides
    assert days["train_split"].max() < days["val_split"].min() - 0.5
    assert days["val_split"].max() < days["test_split"].min() - 0.5
    assert [len(getattr(module, n)) for n in ("train_split", "val_split", "test_split")] == [432, 48, 120]
    assert module.how_split() == ["test rows are the latest by 'date', from 2023-08-29 on",
                                    "validation rows are the latest by 'date', from 2023-08-05 on (data.order_by)"]


def test_test_rows_that_repeat_a_training_rows_inputs_are_counted(tmp_path, capsys):
    """Duplicated records (an export that lists a customer twice): test rows whose input cells repeat a training
    row's exactly are counted on the data line, since the test metrics then overstate the model on new rows."""
    from pipeline.data.tabular import CsvData

    rng = np.random.default_rng(0)
    table = pd.DataFrame({"age": rng.integers(18, 90, 400), "income": rng.normal(50, 10, 400).round(3),
                          "city": rng.choice(["a", "b", "c"], 400), "label": rng.integers(0, 2, 400)})
    table.to_csv(tmp_path / "train.csv", index=False)
    fresh = pd.DataFrame({"age": rng.integers(18, 90, 50), "income": rng.normal(50, 10, 50).round(3),
                          "city": rng.choice(["a", "b", "c"], 50), "label": rng.integers(0, 2, 50)})
    fresh.to_csv(tmp_path / "new.csv", index=False)
    module = CsvData(path=str(tmp_path / "train.csv"), test_path=str(tmp_path / "new.csv"), target="label")
    module.setup("fit")
    assert module.how_split() == [f"test split: {tmp_path / 'new.csv'} (data.test_path)"]  # nothing repeated
    copied = table.iloc[:40].assign(label=1 - table["label"].iloc[:40])  # the same inputs, even with other labels
    pd.concat([copied, fresh]).to_csv(tmp_path / "test.csv", index=False)
    module = CsvData(path=str(tmp_path / "train.csv"), test_path=str(tmp_path / "test.csv"), target="label")
    module.setup("fit")
    line = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Data: csv")][-1]
    assert line.startswith("Data: csv train.csv in memory: ")  # the file read, not only the reader
    note = module.how_split()[-1]
    count = int(note.split(" test row")[0].replace(",", ""))
    assert note == f"{count} test rows ({count / 90:.1%}) repeat a training row's inputs exactly" and note in line
    assert 30 <= count <= 40  # the copies of the rows that the training split kept (10% went to validation)


def test_data_order_by_refusals_name_the_key_and_the_row(store, tmp_path):
    table = daily_sales(60)
    path = tmp_path / "sales.csv"
    table.to_csv(path, index=False)
    table.loc[3, "date"] = None  # a number column may miss cells (imputed); a time column may not
    table.to_csv(tmp_path / "bad.csv", index=False)
    table.assign(date=pd.to_datetime(table["date"].fillna("2024-01-01")).dt.strftime("%d/%m/%Y")).to_csv(
        tmp_path / "european.csv", index=False)
    common = ["task=regression", "data=csv", f"data.path={path}", "data.target=sales", "logger=none"]
    for overrides, says in (
        (["data.order_by=when"], "data.order_by: column 'when' not in"),
        (["data.order_by=date", "data.cv_folds=5"], "data.order_by holds out the latest rows; data.cv_folds"),
        (["data.order_by=date", "data.groups=promo"], "data.groups and data.order_by both choose"),
        (["data.order_by=date", f"data.path={tmp_path / 'bad.csv'}"],
         f"{tmp_path / 'bad.csv'}:5: no time in column 'date' (data.order_by); every row needs one"),
        (["data.order_by=date", f"data.path={tmp_path / 'european.csv'}"],  # a date written otherwise than ISO
         "is neither a date nor a number (dates are read as ISO 8601, 2024-01-05 or 2024-01-05T10:30: a day/month "
         "order cannot be told from month/day; write them so) in column 'date' (data.order_by)"),
    ):
        refused = run_cli_in_process([*common, *overrides], store)
        assert refused.returncode == 2 and says in error_line(refused.stderr), (overrides, refused.stderr[-2000:])


def test_a_rare_class_gets_its_share_of_the_held_out_rows_whatever_its_name_sorts_as(tmp_path):
    """9 rare rows of 1,000: the held-out rows (20 % test, then 10 % validation) should hold ~2.5 of them on average.
    Taking every k-th row of the label-sorted order from position 0 gave a class that sorts last 1 for every seed
    (its validation rows: none) and one that sorts first 3."""
    from pipeline.data.tabular import CsvData

    rng = np.random.default_rng(0)
    held = {}
    for rare in ("aaa", "zzz"):
        path = tmp_path / f"{rare}.csv"
        labels = np.array(["mmm"] * 991 + [rare] * 9)
        pd.DataFrame({"x": rng.normal(size=1000), "y": labels}).to_csv(path, index=False)
        counts = []
        for seed in range(60):
            module = CsvData(path=str(path), target="y", task_kind="classification", seed=seed)
            module.setup("fit")
            rare_class = module.spec.class_names.index(rare)
            counts.append(sum(int((split.y == rare_class).sum()) for split in (module.val_split, module.test_split)))
        held[rare] = float(np.mean(counts))
    assert 2.1 < held["aaa"] < 2.9 and 2.1 < held["zzz"] < 2.9, held


def test_test_rows_without_a_class_are_said_with_what_the_macro_metrics_average(tmp_path, migrated_store_db):
    """Three classes, a test file of two: test/f1 1.0 and auroc 1.0 over the two present, nothing said (macro f1 over
    all three would be 0.667). The metrics keep scikit-learn's convention; the note says what they average over."""
    store = new_store(tmp_path / "store", migrated_store_db)
    rng = np.random.default_rng(0)

    def rows(count: int, classes: list[str]) -> pd.DataFrame:
        label = rng.choice(classes, size=count)
        centre = {"low": -3.0, "mid": 0.0, "high": 3.0}
        return pd.DataFrame({"x": [centre[c] + rng.normal(0, 0.3) for c in label], "label": label})

    train = write_csv(rows(240, ["low", "mid", "high"]), tmp_path / "train.csv")
    test = write_csv(rows(60, ["low", "high"]), tmp_path / "test.csv")
    result = run_cli(["task=classification", "data=csv", f"data.path={train}", f"data.test_path={test}",
                      "data.target=label", "trainer.max_epochs=3", "optimizer.lr=0.05", *SHORT_RUN], store)
    finished_run(store, result)
    assert ("Note: the test rows hold no example of 1 of the 3 classes (mid): test/f1 averages over the classes "
            "predicted or present, test/auroc and test/ap over the 2 present") in result.stdout, result.stdout[-3000:]


@pytest.fixture(scope="module")
def odd_names_run(tmp_path_factory, migrated_store_db):
    """A checkpoint of a model that reads the columns ``my col`` and ``k=v``."""
    folder = tmp_path_factory.mktemp("odd_names")
    store = new_store(folder, migrated_store_db)
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"my col": np.round(rng.normal(size=120), 3), "k=v": np.round(rng.normal(size=120), 3)})
    rows["label"] = np.where(rows["my col"] + rows["k=v"] > 0, "yes", "no")
    train = folder / "train.csv"
    rows.to_csv(train, index=False)
    result = run_cli_in_process(["data=csv", f"data.path={train}", "data.target=label", "trainer.max_epochs=1",
                                 "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    [checkpoint] = folder.glob("outputs*/checkpoints/best-*.ckpt")
    return {"checkpoint": checkpoint, "rows": rows, "folder": folder}


def test_a_column_the_model_reads_written_otherwise_gets_the_nearest_name_and_a_pasteable_rename(odd_names_run):
    """The file's ``My Col`` for the model's ``my col``: the refusal said ``--rename COLUMN=my col``, which names no
    column and cannot be pasted (the space splits it)."""
    import shlex

    folder, rows = odd_names_run["folder"], odd_names_run["rows"]
    written = folder / "written_otherwise.csv"
    rows.rename(columns={"my col": "My Col"}).to_csv(written, index=False)
    output = folder / "predictions.csv"
    common = [str(odd_names_run["checkpoint"]), "--input", str(written), "--output", str(output)]
    code, _, stderr = predict_cli(common)
    line = error_line(stderr)
    assert code == 2 and "has no column 'my col'" in line and "did you mean 'My Col'?" in line, line
    flag = shlex.quote("--rename=My Col=my col")
    assert flag in line, line
    assert not output.exists()
    code, _, stderr = predict_cli([*common, *shlex.split(flag)])  # pasted as the refusal gives it
    assert code == 0, stderr[-2000:]
    assert len(pd.read_csv(output)) == len(rows)


def test_rename_splits_a_name_holding_an_equals_sign_where_the_input_has_the_column(odd_names_run):
    """The model's ``k=v`` written ``K=V`` in the file: ``--rename K=V=k=v`` split at its first ``=`` and said
    ``'K' is not a column``; it splits where the left side is a column of the input (then where the right side is
    one the model reads), and an item that still reads two ways is refused with the quoted way to write it."""
    import shlex

    folder, rows = odd_names_run["folder"], odd_names_run["rows"]
    written = folder / "equals_otherwise.csv"
    upper = rows.rename(columns={"k=v": "K=V"})
    upper.to_csv(written, index=False)
    output = folder / "equals_predictions.csv"
    common = [str(odd_names_run["checkpoint"]), "--input", str(written), "--output", str(output)]
    code, _, stderr = predict_cli([*common, "--rename", "K=V=k=v", "--keep", "K=V"])
    assert code == 0, stderr[-2000:]
    answered = pd.read_csv(output)
    assert len(answered) == len(rows) and answered["k=v"].tolist() == rows["k=v"].tolist()
    # a column 'K' as well: 'K' as 'V=k=v' or 'K=V' as 'k=v'; only 'k=v' is the model's
    upper.assign(K=1.0, x=2.0, **{"x=y": 3.0}).to_csv(written, index=False)
    code, _, stderr = predict_cli([*common, "--rename", "K=V=k=v"])
    assert code == 0, stderr[-2000:]
    code, _, stderr = predict_cli([*common, "--rename", "K=V=k=v", "--rename", "x=y=z"])
    line = error_line(stderr)
    assert code == 2 and "--rename x=y=z reads two ways, 'x' as 'y=z' or 'x=y' as 'z'" in line, line
    flag = shlex.quote('--rename="x=y"=z')
    assert line.endswith(flag), line
    code, _, stderr = predict_cli([*common, "--rename", "K=V=k=v", *shlex.split(flag), "--keep", "z"])
    assert code == 0 and pd.read_csv(output)["z"].eq(3.0).all(), stderr[-2000:]
    code, _, stderr = predict_cli([*common, "--rename", "Q=R=k=v"])
    assert code == 2 and "none of 'Q', 'Q=R', 'Q=R=k' is a column of" in error_line(stderr), stderr[-2000:]


def test_a_regression_on_a_few_test_rows_says_why_r2_has_no_interval_without_naming_classes(store, tmp_path):
    """Two test rows: a redraw that takes one row twice leaves r2 undefined. The note said "a class with only a few
    test rows is absent", and a regression has no classes."""
    path = tmp_path / "twelve.csv"
    x = np.random.default_rng(0).normal(size=12).round(3)
    pd.DataFrame({"x": x, "y": x * 2 + 1}).to_csv(path, index=False)
    result = run_cli(["task=regression", "data=csv", f"data.path={path}", "data.target=y", "trainer.max_epochs=1",
                      "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    [note] = [line for line in result.stdout.splitlines() if line.startswith("Note: no 95 % interval")]
    assert "test/r2" in note and "a redraw often holds one target value only" in note and "class" not in note, note


def test_macro_auroc_of_rare_classes_gets_no_interval_that_misses_its_own_value(store, tmp_path):
    """With classes of a row or two in the test split, each redraw of the test rows left a third of them out, and the
    interval of macro auroc and ap was that of the other classes: test/ap=0.0802 [0.0872, 0.0993], the interval above
    the split's own value. Now such a metric has no interval, said in a Note; acc and f1 keep theirs."""
    generator = np.random.default_rng(0)
    common, rare = 12, 12
    labels = np.concatenate([np.repeat(np.arange(common), 150), np.repeat(np.arange(common, common + rare), 5)])
    features = labels[:, None] * 0.3 + generator.normal(size=(len(labels), 4))
    frame = pd.DataFrame(features, columns=[f"f{i}" for i in range(4)])
    frame["kind"] = [f"class {label}" for label in labels]
    path = tmp_path / "rare.csv"
    frame.sample(frac=1, random_state=0).to_csv(path, index=False)
    result = run_cli(["task=classification", "data=csv", f"data.path={path}", "data.target=kind",
                      "trainer.max_epochs=2", "logger.mlflow.log_model=false", "logger.mlflow.log_plots=false"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Note: no 95 % interval for test/ap, test/auroc: more than 10% of the redraws" in result.stdout, \
        result.stdout[-3000:]
    assert "(a class with only a few test rows is absent from many of them)" in result.stdout
    [run] = runs_in(store)
    metrics = run.data.metrics
    assert "test/auroc" in metrics and "test/ap" in metrics
    assert not {"test/auroc_ci_low", "test/ap_ci_low", "test/auroc_ci_high"} & set(metrics)
    for name in ("acc", "f1"):
        assert metrics[f"test/{name}_ci_low"] <= metrics[f"test/{name}"] <= metrics[f"test/{name}_ci_high"]
