"""Speed without losing what a run or a sweep guarantees (issue 13): what is imported where, the store-writer
process, checkpoints kept in memory between writes, metrics in one pass, data reused by a sweep's worker, and
trials that never look at the test split."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import PROJECT_ROOT, compose_for_train, new_store, run_cli, runs_in


def python(code: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=timeout, env=full_env)


# ----- imports -------------------------------------------------------------------------------------------
def test_a_tabular_run_without_tracking_imports_neither_mlflow_nor_plotting_nor_vision(tmp_path):
    result = python(f"""
        import sys
        from conftest import compose
        from pipeline.train import train
        cfg = compose(["data=synthetic_binary", "trainer.max_epochs=1", "logger=none",
                       "paths.output_dir={tmp_path / 'out'}"])
        train(cfg)
        heavy = ("mlflow", "matplotlib", "torchvision", "scipy", "sklearn", "pandas", "pyarrow", "sqlalchemy")
        print("IMPORTED", sorted(name for name in heavy if name in sys.modules))
    """, env={"PYTHONPATH": str(PROJECT_ROOT / "tests")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "IMPORTED []" in result.stdout, result.stdout[-2000:]


def test_a_tracked_run_records_everything_without_importing_mlflow_in_the_training_process(tmp_path, migrated_store_db):
    """MLflow lives in the store-writer process; the run in the store is still complete when train() returns:
    params, per-epoch metrics, test metrics, the model, plots and FINISHED. The raw-rows model is exported by the
    training process, so the writer never imports torch."""
    store = new_store(tmp_path, migrated_store_db)
    result = python(f"""
        import sys
        from conftest import compose_for_train
        from pipeline.train import train
        store = {{"artifacts": {store['artifacts']!r}, "outputs": {str(store['outputs'])!r}}}
        train(compose_for_train(store, ["trainer.max_epochs=2"]))
        print("MLFLOW IMPORTED", "mlflow" in sys.modules, "matplotlib" in sys.modules)
        from pipeline.tracking.remote import call_in_writer
        question = "[name in __import__('sys').modules for name in ('mlflow', 'torch')]"  # asked of the writer
        ok, writer_has = call_in_writer("builtins:eval", question).result()
        print("WRITER HAS MLFLOW, TORCH", writer_has)
    """, env={"PYTHONPATH": str(PROJECT_ROOT / "tests")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MLFLOW IMPORTED False True" in result.stdout  # plots are drawn here, at the end
    assert "WRITER HAS MLFLOW, TORCH [True, False]" in result.stdout, result.stdout[-2000:]
    [run] = runs_in(store)
    assert run.info.status == "FINISHED"
    assert {"val/loss", "train/loss", "test/acc", "val/loss_best"} <= set(run.data.metrics)
    assert run.data.params["optimizer._target_"] == "torch.optim.Adam" and run.data.tags["git_commit"]
    from mlflow import MlflowClient

    client = MlflowClient(store["uri"])
    assert len(client.get_metric_history(run.info.run_id, "val/loss")) == 2
    assert {a.path for a in client.list_artifacts(run.info.run_id, "plots")} >= {"plots/learning_curves.png"}
    [model] = client.search_logged_models([run.info.experiment_id])
    assert model.source_run_id == run.info.run_id and model.status.name == "READY"


def test_the_data_sets_whose_model_takes_tensors_are_listed_for_the_store_writers_warm_up():
    """pipeline-train tells from the composed config which modules the store writer should import for the model
    (pipeline.data.TENSOR_MODEL_DATA); the list must say what each data config's class says."""
    import yaml
    from hydra.utils import get_class

    from pipeline.config import CONFIG_DIR
    from pipeline.data import TENSOR_MODEL_DATA

    targets = {yaml.safe_load(path.read_text()).get("_target_") for path in (CONFIG_DIR / "data").glob("*.yaml")}
    targets.discard(None)  # the shared parts (_common.yaml ...)
    assert len(targets) > 10 and TENSOR_MODEL_DATA <= targets
    assert {t for t in targets if not get_class(t).model_takes_raw_rows()} == TENSOR_MODEL_DATA


def test_a_store_writer_that_dies_mid_run_ends_the_run_with_tracking_failed_and_loses_nothing(tmp_path,
                                                                                            migrated_store_db):
    from pytorch_lightning import Callback

    from pipeline.errors import TrackingFailed
    from pipeline.tracking.remote import StoreWriter
    from pipeline.train import train

    class KillTheWriter(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                writer = StoreWriter.get()
                writer.process.kill()
                writer.process.wait()

    store = new_store(tmp_path, migrated_store_db)
    with pytest.raises(TrackingFailed, match="nothing is lost") as failed:
        train(compose_for_train(store, ["trainer.max_epochs=4", "logger.mlflow.log_model=false"]),
              callbacks=[KillTheWriter()])
    assert str(store["outputs"]) in str(failed.value)
    lines = [json.loads(line) for line in (store["outputs"] / "metrics.jsonl").read_text().splitlines()]
    assert sum("train/loss" in line for line in lines) == 4 and any("test/acc" in line for line in lines)
    assert (store["outputs"] / "checkpoints" / "last.ckpt").is_file()


class _StoreThatRefusesRuns:
    """An MLflow server that answers its health check and refuses every API call (400, no retries)."""

    @staticmethod
    def handler():
        from http.server import BaseHTTPRequestHandler

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                body = b'{"error_code": "INVALID_PARAMETER_VALUE", "message": "refused by the test server"}'
                self.send_response(200 if self.path.startswith("/health") else 400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer  # noqa: N815

            def log_message(self, *args):
                pass

        return Handler


def test_a_trial_run_is_created_while_the_trial_trains_and_a_refused_one_fails_the_trial_at_its_end(tmp_path, capfd):
    """A sweep's trial does not wait for its MLflow run to be created: what it logs meanwhile is queued behind the
    creation. When the store refuses the run, the trial still ends with the error that a single run gets at once,
    and what it sent meanwhile is dropped without a warning per request."""
    import threading
    from http.server import HTTPServer

    from pipeline.errors import TrackingUnavailable
    from pipeline.tracking.remote import RemoteRun, close_writer

    server = HTTPServer(("127.0.0.1", 0), _StoreThatRefusesRuns.handler())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        trial_run = RemoteRun(uri, "refused", run_name="trial-0", output_dir=tmp_path, wait_for_store=False)
        trained = False
        with pytest.raises(TrackingUnavailable, match="cannot create an MLflow run") as refused:
            with trial_run:
                assert trial_run.active  # being created: logging goes on meanwhile
                trial_run.log_params({"lr": 0.1})
                trial_run.log_metrics({"val/loss": 0.5}, step=0)
                trial_run.set_tags({"sweep.state": "RUNNING"})
                trained = True
        assert trained and "refused by the test server" in str(refused.value)
        assert trial_run.run_id is None and not trial_run.active
        single_run = RemoteRun(uri, "refused", run_name="single", output_dir=tmp_path)
        with pytest.raises(TrackingUnavailable, match="cannot create an MLflow run"):
            single_run.__enter__()  # a single run waits for its creation and is refused before it trains
        close_writer()  # every request carried out
    finally:
        server.shutdown()
    assert "MLflow store request" not in capfd.readouterr().err  # no warning per request the refused run sent


# ----- checkpoints kept in memory between writes ------------------------------------------------------------
@pytest.mark.unit
def test_checkpoints_written_within_the_interval_are_kept_in_memory_and_written_together(tmp_path):
    from pipeline.callbacks import AtomicCheckpointIO

    io = AtomicCheckpointIO(write_interval_s=3600)
    weights = torch.zeros(3)
    last, best_1, best_2 = tmp_path / "last.ckpt", tmp_path / "best-1.ckpt", tmp_path / "best-2.ckpt"
    io.save_checkpoint({"epoch": 0, "w": weights}, best_1)
    io.save_checkpoint({"epoch": 0, "w": weights, "best": str(best_1)}, last)  # last.ckpt: written at once
    assert torch.load(last, weights_only=True)["epoch"] == 0
    weights += 1  # training goes on changing the tensors in place
    io.save_checkpoint({"epoch": 1, "w": weights}, best_2)
    io.remove_checkpoint(best_1)  # the last.ckpt on disk still names best-1: kept until best-2 is on disk
    io.save_checkpoint({"epoch": 1, "w": weights, "best": str(best_2)}, last)
    weights += 1
    assert not best_2.exists() and best_1.exists() and torch.load(last, weights_only=True)["epoch"] == 0
    io.teardown()  # end of training, Ctrl-C or an error: Lightning tears the run down
    saved = torch.load(last, weights_only=True)
    assert saved["epoch"] == 1 and saved["best"] == str(best_2) and torch.equal(saved["w"], torch.ones(3))
    assert torch.equal(torch.load(best_2, weights_only=True)["w"], torch.ones(3)) and not best_1.exists()


@pytest.mark.unit
def test_checkpoints_due_are_written_in_the_background_in_order_and_a_failed_write_is_raised(tmp_path, monkeypatch):
    import errno
    import threading

    from pipeline.callbacks import AtomicCheckpointIO
    from pipeline.errors import StorageFull

    io = AtomicCheckpointIO(write_interval_s=3600)
    started, release, order = threading.Event(), threading.Event(), []
    real_write = AtomicCheckpointIO._write

    def slow_write(self, checkpoint, path):
        order.append(Path(path).name)
        if threading.current_thread() is not threading.main_thread():
            started.set()
            release.wait(10)
        real_write(self, checkpoint, path)

    monkeypatch.setattr(AtomicCheckpointIO, "_write", slow_write)
    weights = torch.zeros(3)
    last, best_1, best_2 = tmp_path / "last.ckpt", tmp_path / "best-1.ckpt", tmp_path / "best-2.ckpt"
    io.save_checkpoint({"epoch": 0, "global_step": 4, "w": weights}, last)  # the first last.ckpt: at once
    io.write_interval_s = 1e-9  # the interval has passed: the next save starts a batch in the background
    io.save_checkpoint({"epoch": 1, "global_step": 8, "w": weights}, best_1)
    assert started.wait(10)
    io.write_interval_s = 3600
    weights += 1  # training goes on while best-1 is written
    io.save_checkpoint({"epoch": 2, "global_step": 12, "w": weights}, best_2)  # kept in memory
    io.remove_checkpoint(best_1)  # being written: deleted after the files that replace it, not before
    io.save_checkpoint({"epoch": 2, "global_step": 12, "w": weights, "best": str(best_2)}, last)
    assert not best_2.exists() and torch.load(last, weights_only=True)["epoch"] == 0
    release.set()
    io._writing.join(10)
    assert torch.equal(torch.load(best_1, weights_only=True)["w"], torch.zeros(3))  # the state it was saved with
    io.teardown()  # the end of training: best-2, then the last.ckpt naming it, then best-1 deleted
    assert order == ["last.ckpt", "best-1.ckpt", "best-2.ckpt", "last.ckpt"]
    assert not best_1.exists() and torch.load(last, weights_only=True)["best"] == str(best_2)
    assert torch.equal(torch.load(best_2, weights_only=True)["w"], torch.ones(3))

    # a background write that fails is raised in the training thread, at its next save, naming the place
    monkeypatch.setattr(AtomicCheckpointIO, "_write", real_write)
    io = AtomicCheckpointIO(write_interval_s=1e-9)
    real_open = open

    def full_disk(path, mode="r", *args, **kwargs):
        if "w" in mode and ".tmp-" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", full_disk)
    io.save_checkpoint({"epoch": 2, "global_step": 12, "w": weights}, tmp_path / "best-3.ckpt")
    io._writing.join(10)
    with pytest.raises(StorageFull, match=f"no space left on the device of {tmp_path}"):
        io.save_checkpoint({"epoch": 3, "global_step": 16, "w": weights}, tmp_path / "best-4.ckpt")
    monkeypatch.setattr("builtins.open", real_open)
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


@pytest.mark.unit
def test_the_best_file_and_last_ckpt_of_one_epoch_share_their_copy_of_each_unchanged_tensor():
    from pipeline.callbacks import _Copies

    copies, weights = _Copies(), torch.zeros(1000)
    gathered = {"epoch": 3, "global_step": 30, "state_dict": {"w": weights}}
    best, last = copies.snapshot(gathered), copies.snapshot(gathered)
    assert best["state_dict"]["w"] is last["state_dict"]["w"] and best["state_dict"]["w"] is not weights
    weights += 1  # changed in place (its version moves): copied again, and the earlier copy keeps the old values
    again = copies.snapshot(gathered)
    assert torch.equal(again["state_dict"]["w"], torch.ones(1000)) and torch.equal(best["state_dict"]["w"], torch.zeros(1000))
    later = copies.snapshot({**gathered, "global_step": 31})  # another step: nothing is shared
    assert later["state_dict"]["w"] is not again["state_dict"]["w"]


@pytest.mark.parametrize("refresh_share", [1.0, 0.02])
def test_an_interrupt_between_writes_saves_a_completed_epoch_and_resumes_exactly(tmp_path, store, refresh_share):
    """With nothing written for the interval, Ctrl-C still leaves last.ckpt at the end of a completed epoch: the last
    one when it is refreshed every epoch (refresh_share=1), the newest refresh otherwise (epochs of milliseconds
    are not all refreshed); resuming from it gives the uninterrupted run's metrics exactly, and a run that ends
    leaves its last epoch in last.ckpt."""
    from pytorch_lightning import Callback

    from pipeline.errors import RunInterrupted
    from pipeline.train import train

    class InterruptMidEpoch(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.current_epoch == 3 and batch_idx == 2:
                raise KeyboardInterrupt

    args = ["data=synthetic_binary", "data.limit_rows=400", "model.dropout=0.3", "trainer.max_epochs=6",
            "logger=none", "callbacks=model_checkpoint", "callbacks.model_checkpoint.write_interval_s=3600",
            f"callbacks.model_checkpoint.refresh_share={refresh_share}"]
    with pytest.raises(RunInterrupted) as interrupted:
        train(compose_for_train(store, args), callbacks=[InterruptMidEpoch()])
    last = interrupted.value.resume_from
    epoch = torch.load(last, weights_only=True)["epoch"]
    assert epoch == 2 if refresh_share == 1 else epoch <= 2  # epochs 0-2 completed, never the unfinished one
    resumed = dict(store, outputs=tmp_path / "resumed")
    metrics = train(compose_for_train(resumed, [*args, f"ckpt_path={last}"]))
    whole = dict(store, outputs=tmp_path / "whole")
    expected = train(compose_for_train(whole, args))
    assert metrics["test/acc"] == expected["test/acc"] and metrics["val/loss_best"] == expected["val/loss_best"]
    finals = [torch.load(outputs["outputs"] / "checkpoints" / "last.ckpt", weights_only=True) for outputs in (resumed, whole)]
    assert [final["epoch"] for final in finals] == [5, 5]  # the run's last epoch
    assert finals[0]["global_step"] == finals[1]["global_step"] > 0


# ----- metrics in one pass ------------------------------------------------------------------------------------
@pytest.mark.unit
def test_one_pass_metrics_match_torchmetrics_with_ties_and_absent_classes():
    import torchmetrics
    from torchmetrics import classification as tc

    from pipeline.tasks import metrics

    generator = torch.Generator().manual_seed(0)
    for rows in (1, 2, 7, 46, 113):
        scores = (torch.rand(rows, generator=generator) * 8).round() / 8  # ties, and exactly 0.5
        for targets in (torch.randint(0, 2, (rows,), generator=generator), torch.zeros(rows, dtype=torch.long)):
            ours = metrics.binary(scores, targets)
            theirs = {"acc": tc.BinaryAccuracy()(scores, targets), "f1": tc.BinaryF1Score()(scores, targets)}
            if 0 < int(targets.sum()) < rows:
                theirs["auroc"] = tc.BinaryAUROC()(scores, targets)
            else:  # undefined: torchmetrics says 0, which reads as the worst score; ours is NaN (not logged)
                assert math.isnan(float(ours["auroc"]))
            if 0 < int(targets.sum()) < rows:
                theirs["ap"] = tc.BinaryAveragePrecision()(scores, targets)
            else:  # without positives torchmetrics says NaN, as ours; without negatives 1 whatever the scores, ours NaN
                assert math.isnan(float(ours["ap"]))
            if not int(targets.sum()) and not int((scores > 0.5).sum()):  # f1 of 0/0: torchmetrics 0, ours NaN
                assert math.isnan(float(ours["f1"]))
                del theirs["f1"]
            for name, value in theirs.items():
                assert float(ours[name]) == pytest.approx(float(value), abs=1e-6), (rows, name)
        probabilities = torch.rand(rows, 4, generator=generator).softmax(-1)
        labels = torch.randint(0, 3, (rows,), generator=generator)  # class 3 never occurs
        ours = metrics.multiclass(probabilities, labels, 4)
        assert float(ours["acc"]) == pytest.approx(float(tc.MulticlassAccuracy(4, average="micro")(probabilities, labels)))
        assert float(ours["f1"]) == pytest.approx(float(tc.MulticlassF1Score(4, average="macro")(probabilities, labels)))
        per_class = tc.MulticlassAUROC(4, average=None)(probabilities, labels)  # class 3: 0, it has no ROC curve
        present = [k for k in range(4) if 0 < int((labels == k).sum()) < rows]
        expected = float(per_class[present].mean()) if present else math.nan
        assert float(ours["auroc"]) == pytest.approx(expected, abs=1e-6, nan_ok=True), rows
        per_class = tc.MulticlassAveragePrecision(4, average=None)(probabilities, labels)  # class 3: no positives
        occurring = [k for k in range(4) if 0 < int((labels == k).sum()) < rows]  # a class of every row: 1, left out
        expected = float(per_class[occurring].mean()) if occurring else math.nan
        assert float(ours["ap"]) == pytest.approx(expected, abs=1e-6, nan_ok=True), rows
        if rows >= 4:  # every class occurs: torchmetrics' macro average itself
            every = torch.randperm(rows, generator=generator) % 4
            assert float(metrics.multiclass(probabilities, every, 4)["auroc"]) == pytest.approx(
                float(tc.MulticlassAUROC(4, average="macro")(probabilities, every)), abs=1e-6)
        if rows > 1:
            predictions, truth = torch.randn(rows, generator=generator), torch.randn(rows, generator=generator)
            ours = metrics.regression(predictions, truth)
            assert float(ours["r2"]) == pytest.approx(float(torchmetrics.R2Score()(predictions, truth)), abs=1e-5)
            assert float(ours["mae"]) == pytest.approx(float(torchmetrics.MeanAbsoluteError()(predictions, truth)))
            assert float(ours["rmse"]) == pytest.approx(
                float(torchmetrics.MeanSquaredError(squared=False)(predictions, truth)))


@pytest.mark.unit
def test_bootstrap_intervals_are_the_metrics_of_redrawn_test_rows():
    """task.test_intervals: each redraw's metrics, computed with row weights, are the metrics of the redrawn rows
    (macro auroc and ap over the split's classes: undefined on a redraw that lacks one); the interval is the 2.5th
    and 97.5th percentile of those of a plain loop over the same redraws, given where at least 90 % of the redraws
    define the metric; the order the rows come in (a DDP run gathers them rank by rank) changes nothing."""
    import numpy as np

    from pipeline.tasks import intervals, metrics

    generator = np.random.default_rng(3)
    for rows in (1, 7, 46, 113):
        scores = np.round(generator.random(rows) * 8) / 8  # ties, and exactly 0.5
        positive = generator.random(rows) < 0.3
        probabilities = generator.random((rows, 4))
        probabilities /= probabilities.sum(1, keepdims=True)
        labels = generator.integers(0, 3, rows)  # class 3 never occurs
        truth = generator.normal(size=rows)
        predictions = truth + generator.normal(size=rows)
        kinds = [(lambda x, y: metrics.binary(torch.tensor(x), torch.tensor(y)), intervals.binary, scores, positive),
                 (lambda x, y: metrics.multiclass(torch.tensor(x), torch.tensor(y), 4),
                  lambda x, y: intervals.multiclass(x, y, 4), probabilities, labels),
                 (lambda x, y: metrics.regression(torch.tensor(x), torch.tensor(y)), intervals.regression, predictions,
                  truth)]
        for plain, weighted, inputs, targets in kinds:
            draws = np.random.default_rng(intervals.SEED).integers(0, rows, size=(200, rows))
            weights = np.stack([np.bincount(draw, minlength=rows) for draw in draws]).astype(np.float64)
            ours = weighted(inputs, targets)(np.vstack([np.ones(rows), weights]))
            expected = [plain(inputs, targets)] + [plain(inputs[draw], targets[draw]) for draw in draws]
            bounds = intervals.bootstrap(weighted(inputs, targets), rows, 200)
            if targets is labels:  # macro auroc and ap: over the split's classes, undefined on a redraw that lacks one
                split_classes = set(labels.tolist()) if len(set(labels.tolist())) > 1 else set()
                for index, draw in enumerate(draws, start=1):
                    drawn = set(labels[draw].tolist())
                    if not split_classes <= drawn or len(drawn) < 2:
                        expected[index] = {**expected[index], "auroc": float("nan"), "ap": float("nan")}
            for name in expected[0]:
                values = np.array([float(e[name]) for e in expected])
                assert ours[name] == pytest.approx(values, abs=1e-5, nan_ok=True), (rows, name)
                defined = values[1:][~np.isnan(values[1:])]  # a redraw without a positive row has no auroc
                if len(defined) < intervals.MIN_DEFINED_SHARE * 200:  # an interval over the others: not given
                    assert name not in bounds, (rows, name)
                    continue
                assert bounds[name] == pytest.approx(tuple(np.percentile(defined, [2.5, 97.5])), abs=1e-5)
            shuffled = generator.permutation(rows)
            assert intervals.bootstrap(weighted(*intervals.in_canonical_order(inputs, targets)), rows, 300) == \
                intervals.bootstrap(weighted(*intervals.in_canonical_order(inputs[shuffled], targets[shuffled])), rows, 300)


@pytest.mark.unit
def test_the_plotted_roc_and_precision_recall_curves_have_the_areas_of_the_metrics(tmp_path):
    """plots/roc_pr_curves.png draws the curves whose areas are test/auroc and test/ap (ties entering together);
    one curve per class for up to ten classes, none beyond."""
    import numpy as np

    from pipeline import plots
    from pipeline.tasks import metrics

    generator = np.random.default_rng(5)
    for rows in (2, 9, 113):
        scores = np.round(generator.random(rows) * 8) / 8
        positive = np.arange(rows) % 3 == 0
        *_, area, average = plots._curves(scores, positive)
        expected = metrics.binary(torch.tensor(scores), torch.tensor(positive))
        assert (area, average) == pytest.approx((float(expected["auroc"]), float(expected["ap"])), abs=1e-6)
    labels = np.arange(60) % 3
    assert plots.roc_and_precision_recall(labels % 2, generator.random(60), tmp_path / "b.png", ["no", "yes"])
    assert plots.roc_and_precision_recall(labels, generator.dirichlet(np.ones(3), 60), tmp_path / "m.png")
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    assert plots.roc_and_precision_recall(np.arange(60) % 12, generator.dirichlet(np.ones(12), 60), tmp_path / "x.png") is None
    # test rows of one class (pipeline-eval on such a file): no curve, said on the plot; matplotlib's "No artists
    # with labels found to put in legend" warning reached the console
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert plots.roc_and_precision_recall(np.ones(20), generator.random(20), tmp_path / "one.png", ["no", "yes"])


# ----- a sweep's worker ---------------------------------------------------------------------------------------
@pytest.mark.unit
def test_a_worker_sets_up_its_data_once_per_data_config():
    from conftest import compose

    from pipeline.train import PreparedData

    prepared = PreparedData()
    first = prepared(compose(["data=synthetic_binary", "optimizer.lr=0.1"]))
    assert prepared(compose(["data=synthetic_binary", "optimizer.lr=0.01", "model.dropout=0.2"])) is first
    other = prepared(compose(["data=synthetic_binary", "data.n_samples=500"]))
    assert other is not first and len(other.train_split) < len(first.train_split)


@pytest.mark.unit
def test_lightnings_bookkeeping_per_step_is_cheap_and_a_configured_profiler_is_kept(tmp_path):
    """Lightning wraps ~45 calls per training step in ``profiler.profile(name)`` and reads the step methods'
    signatures at every batch: the default Trainer gets a profiler whose context costs nothing, the step methods
    keep their signature, and a profiler the user asks for is still the one used."""
    import inspect

    from pytorch_lightning.profilers import SimpleProfiler

    from conftest import compose
    from pipeline.callbacks import NoProfiler
    from pipeline.tasks.base import TaskModule
    from pipeline.tasks.regression import RegressionModule
    from pipeline.train import PreparedData, build

    base = ["data=synthetic_binary", "logger=none", "callbacks=none"]
    datamodule = PreparedData()(compose(base))
    default = build(compose(base), datamodule, (), tmp_path / "default")
    assert type(default.trainer.profiler) is NoProfiler
    assert default.trainer.profiler.profile("a") is default.trainer.profiler.profile("b")
    asked = build(compose([*base, "+trainer.profiler=simple"]), datamodule, (), tmp_path / "asked")
    assert isinstance(asked.trainer.profiler, SimpleProfiler)
    for name in ("training_step", "validation_step", "test_step"):
        assert "__signature__" in getattr(TaskModule, name).__dict__
        assert inspect.getfullargspec(getattr(RegressionModule(torch.nn.Linear(2, 1), torch.optim.SGD), name)).args \
            == ["self", "batch", "batch_idx"]


@pytest.mark.unit
def test_the_task_module_steps_the_optimizer_itself_unless_lightnings_loop_is_needed(tmp_path):
    """The short loop (manual optimisation) by default; Lightning's automatic loop where its machinery is used:
    gradient accumulation, clipping, L-BFGS's closure, mixed precision."""
    from conftest import compose
    from pipeline.train import PreparedData, build

    base = ["data=synthetic_binary", "logger=none", "callbacks=none"]
    datamodule = PreparedData()(compose(base))
    cases = {(): False, ("trainer.accumulate_grad_batches=2",): True, ("trainer.gradient_clip_val=1.0",): True,
             ("optimizer=lbfgs",): True, ("trainer.precision=bf16-mixed",): True, ("scheduler=plateau",): False}
    for number, (overrides, automatic) in enumerate(cases.items()):
        parts = build(compose([*base, *overrides]), datamodule, (), tmp_path / str(number))
        assert parts.task_module.automatic_optimization is automatic, overrides


def test_hyperband_does_not_look_the_study_up_by_name_at_every_epoch(tmp_path, monkeypatch):
    """Hyperband builds a view of the trial's bracket at every should_prune, which asks the storage for the study's id
    by name: that answer is kept (one SQL query per study instead of one per epoch), and is still right."""
    from types import SimpleNamespace

    import optuna

    from pipeline.sweep.study import claim_waiting_trial, make_pruner, open_storage

    url = f"sqlite:///{tmp_path}/optuna.db"
    storage = open_storage(url)
    study = optuna.create_study(storage=storage, study_name="by-name", pruner=make_pruner(
        "hyperband", {"min_resource": 1, "max_resource": 9, "reduction_factor": 3}))  # its brackets exist at once
    study.enqueue_trial({})
    frozen = claim_waiting_trial(study, SimpleNamespace(storage=url, n_trials=1))
    lookups: list[str] = []
    backend_lookup = storage._backend.get_study_id_from_name
    monkeypatch.setattr(storage._backend, "get_study_id_from_name",
                        lambda name: (lookups.append(name), backend_lookup(name))[1])
    trial = optuna.Trial(study, frozen._trial_id)
    for epoch in range(1, 6):
        trial.report(1.0 / epoch, epoch)
        trial.should_prune()
    assert len(lookups) <= 1, lookups
    assert storage.get_study_id_from_name("by-name") == study._study_id
    with pytest.raises(KeyError):
        storage.get_study_id_from_name("no-such-study")


def test_a_claimed_trial_is_read_from_memory_exactly_as_the_storage_holds_it(tmp_path, monkeypatch):
    """Sampling and pruning read the running trial back again and again; this process is its only writer, so
    the storage wrapper answers from a copy it updates on each write instead of loading the trial (five tables)
    from SQLite. What it answers must be what SQLite holds (its intermediate values are written when it ends, in
    one transaction, whether it completes or fails), and a list of trials taken before a write must not change
    with it (the successive-halving pruner lists the trials, records this trial's rung value, then compares
    against the list)."""
    from types import SimpleNamespace

    import optuna
    from optuna.trial import TrialState

    from pipeline.sweep.study import claim_waiting_trial, open_storage

    url = f"sqlite:///{tmp_path}/optuna.db"
    storage = open_storage(url)
    study = optuna.create_study(storage=storage, study_name="held")
    for _ in range(2):
        study.enqueue_trial({})
    frozen = claim_waiting_trial(study, SimpleNamespace(storage=url, n_trials=2))
    trial_id = frozen._trial_id
    loaded: list[int] = []
    backend_get_trials = storage._backend._get_trials
    monkeypatch.setattr(storage._backend, "_get_trials", lambda study_id, states, included, last: (
        loaded.extend(included), backend_get_trials(study_id, states, included, last))[1])

    trial = optuna.Trial(study, trial_id)
    trial.suggest_float("x", 0.0, 1.0)
    trial.suggest_categorical("optimizer", ["adam", "sgd"])
    trial.report(0.5, 1)
    trial.set_user_attr("worker", "here")
    listed = {t.number: t for t in study.get_trials(deepcopy=False)}
    storage.set_trial_system_attr(trial_id, "completed_rung_0", 0.5)

    trial.report(0.4, 2)
    fresh = storage._backend.get_trial(trial_id)
    for seen in (storage.get_trial(trial_id), {t.number: t for t in study.get_trials(deepcopy=False)}[frozen.number]):
        assert (seen.state, seen.params, seen.distributions, seen.user_attrs, seen.system_attrs) == (
            fresh.state, fresh.params, fresh.distributions, fresh.user_attrs, fresh.system_attrs)
        assert seen.intermediate_values == {1: 0.5, 2: 0.4}
    # the running trial's intermediate values are written when it ends, in one transaction
    assert fresh.intermediate_values == {}
    assert "completed_rung_0" not in listed[frozen.number].system_attrs  # the earlier list kept what it saw
    assert listed[frozen.number].params == fresh.params
    assert trial_id not in loaded, "the running trial was loaded from SQLite for a list of trials"

    study.tell(trial, 1.0)  # finished: read from the storage again
    [done] = [t for t in study.get_trials(deepcopy=False) if t.number == frozen.number]
    assert done.state == TrialState.COMPLETE and done.value == 1.0 and done.intermediate_values == {1: 0.5, 2: 0.4}
    assert storage.get_trial(trial_id).state == TrialState.COMPLETE
    assert storage._backend.get_trial(trial_id).intermediate_values == {1: 0.5, 2: 0.4}

    # a trial that fails (Ctrl-C, an error) keeps what it reported too, as another process reads it
    second = claim_waiting_trial(study, SimpleNamespace(storage=url, n_trials=2))
    failing = optuna.Trial(study, second._trial_id)
    failing.report(0.7, 1)
    study.tell(failing, state=TrialState.FAIL)
    other_process = optuna.storages.RDBStorage(url)
    assert other_process.get_trial(second._trial_id).intermediate_values == {1: 0.7}


def test_a_trials_writes_reach_the_storage_together_and_as_optuna_writes_them(tmp_path):
    """A trial's params and user attributes were an SQLite transaction each (a dozen per trial). Inside
    ``writes_together`` they are written in one, at ``flush_writes`` (the worker: its parameters before it trains,
    its MLflow run id once the run exists), when its state is set, or when the block ends (an error included). What
    another process then reads is what Optuna's own writes leave: compared row by row with a study written by
    plain Optuna. A distribution that clashes with an earlier trial's is still refused when it is suggested."""
    import contextlib
    from types import SimpleNamespace

    import optuna
    from optuna.trial import TrialState

    from pipeline.sweep.study import claim_waiting_trial, flush_writes, open_storage, tell, writes_together

    def play(study, trial, together):
        with together(trial):
            trial.set_user_attr("fail_reason", None)  # the worker resets a retried trial's attributes
            trial.suggest_float("lr", 1e-4, 1e-1, log=True)
            trial.suggest_categorical("optimizer", ["adam", "sgd"])
            trial.set_user_attr("overrides", ["optimizer=adam"])
            flushed.append(before_flush(trial))
            flush_writes(study, trial._trial_id)
            trial.set_user_attr("mlflow_run_id", "abc")
            trial.report(0.5, 1)
            trial.report(0.25, 2)
            trial.set_user_attr("epochs_trained", 2)
            return tell(study, trial, [0.25])

    def rows(url):
        reader = optuna.storages.RDBStorage(url)  # another process's view
        study_id = reader.get_study_id_from_name("w")
        return [(t.number, t.state, t.values, t.params, t.distributions, t.user_attrs, t.intermediate_values)
                for t in reader.get_all_trials(study_id)]

    results, flushed = {}, []
    for side in ("optuna", "together"):
        url = f"sqlite:///{tmp_path}/{side}.db"
        storage = open_storage(url) if side == "together" else optuna.storages.RDBStorage(url)
        study = optuna.create_study(storage=storage, study_name="w", sampler=optuna.samplers.RandomSampler(seed=0))
        study.enqueue_trial({}, user_attrs={"fail_reason": "an earlier try"})
        if side == "together":
            frozen = claim_waiting_trial(study, SimpleNamespace(storage=url, n_trials=1))
            trial = optuna.Trial(study, frozen._trial_id)
            before_flush = lambda t: rows(url)[0][3:6]  # noqa: E731
            ended = play(study, trial, lambda t: writes_together(study, t._trial_id))
        else:
            trial = study.ask()
            before_flush = lambda t: None  # noqa: E731
            ended = play(study, trial, lambda t: contextlib.nullcontext())
        assert ended == (TrialState.COMPLETE, [0.25])
        results[side] = rows(url)
    # nothing of the block was written before the first flush (the retried trial's old attribute still there)
    assert flushed[1] == ({}, {}, {"fail_reason": "an earlier try"})
    assert results["together"] == results["optuna"]

    # a second trial: an error leaving the block still writes what the trial wrote; a clash is refused at once
    url = f"sqlite:///{tmp_path}/together.db"
    study = optuna.load_study(study_name="w", storage=open_storage(url))
    study.enqueue_trial({})
    frozen = claim_waiting_trial(study, SimpleNamespace(storage=url, n_trials=2))
    trial = optuna.Trial(study, frozen._trial_id)
    with pytest.raises(RuntimeError), writes_together(study, trial._trial_id):
        trial.set_user_attr("worker", "here")
        with pytest.raises(ValueError, match="Cannot set different"):
            trial.suggest_float("lr", 0.0, 1.0)
        raise RuntimeError("the trial's job failed")
    assert optuna.storages.RDBStorage(url).get_trial(frozen._trial_id).user_attrs == {"worker": "here"}


@pytest.mark.parametrize("objectives", [["val/loss"], ["val/loss", "val/acc"]])
def test_the_trials_table_has_the_columns_and_values_of_optunas_dataframe(tmp_path, objectives):
    """trials.csv is written without pandas (its import was ~0.4 s at the end of every sweep); it holds what
    ``study.trials_dataframe()`` holds, read back with pandas."""
    import warnings

    import optuna
    import pandas as pd

    from pipeline.sweep.report import write_trials_table

    study = optuna.create_study(directions=["minimize"] * len(objectives))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "experimental"
        study.set_metric_names(objectives)
    for number in range(4):
        trial = study.ask()
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        if number % 2:
            trial.suggest_categorical("optimizer", ["sgd", "adam"])
        trial.set_user_attr("overrides", [f"optimizer.lr={number}"])
        if number == 2:
            if len(objectives) == 1:  # Optuna reports intermediate values of one objective only
                trial.report(0.3, 1)
            trial.set_user_attr("pruned_at_epoch", 1)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif number == 3:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, [0.1 * (number + 1)] * len(objectives))
    study.ask()  # one still running: no end, no value

    write_trials_table(study, tmp_path / "trials.csv")
    study.trials_dataframe(multi_index=False).to_csv(tmp_path / "pandas.csv", index=False)
    ours, theirs = pd.read_csv(tmp_path / "trials.csv"), pd.read_csv(tmp_path / "pandas.csv")
    assert list(ours.columns) == list(theirs.columns)
    pd.testing.assert_frame_equal(ours, theirs, check_dtype=False)


def test_trials_never_evaluate_the_test_split_or_write_checkpoints_and_the_best_config_reproduces_the_trial(
        tmp_path, migrated_store_db):
    """Only the final run of the best trial runs a test step; no trial folder holds a checkpoint (Lightning's
    default checkpoint included); the best config, trained as an experiment, gives the trial's value exactly."""
    from conftest import run_cli_in_process
    from optuna.trial import TrialState

    import optuna
    from pipeline.tasks.base import TaskModule

    store = new_store(tmp_path, migrated_store_db)
    tested_in: list[str] = []
    original = TaskModule.test_step

    def recording_test_step(self, batch, batch_idx):
        tested_in.append(Path(self.trainer.default_root_dir).name)
        return original(self, batch, batch_idx)

    storage = f"sqlite:///{tmp_path}/optuna.db"
    TaskModule.test_step = recording_test_step
    try:
        result = run_cli_in_process(["-m", "hparams_search=classification_optuna", "data.limit_rows=300",
                                     "trainer.max_epochs=3", "hydra.sweeper.n_trials=4", "hydra.sweeper.sampler=random",
                                     f"hydra.sweeper.storage={storage}", f"paths.mlruns_dir={store['outputs'].parent / 'mlruns'}",
                                     f"hydra.sweep.dir={store['outputs']}"])
    finally:
        TaskModule.test_step = original
    assert result.returncode == 0, result.stderr[-3000:]
    trials = optuna.load_study(study_name="classification_optuna", storage=storage).get_trials(deepcopy=False)
    best = min((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert set(tested_in) == {f"best-{best.number}"}, tested_in
    trial_dirs = [p for p in store["outputs"].iterdir() if p.name.isdigit()]
    assert len(trial_dirs) == 4 and not [p for d in trial_dirs for p in d.rglob("*.ckpt")]
    assert list((store["outputs"] / f"best-{best.number}" / "checkpoints").glob("*.ckpt"))
    runs = runs_in(store)
    children = [r for r in runs if "sweep.trial_number" in r.data.tags and "best" not in r.data.tags]
    assert len(children) == 4, "\n".join([  # what the store and the study hold, should this ever fail again
        *(f"run {r.info.run_id} {r.info.run_name} {r.info.status} {r.data.tags}" for r in runs),
        *(f"trial {t.number} {t.state.name} {t.user_attrs}" for t in trials),
        "store lines:", *(line for line in (result.stdout + result.stderr).splitlines() if "store" in line.lower()),
        "stdout:", result.stdout[-3000:], "stderr:", result.stderr[-3000:]])
    assert all(not any(k.startswith("test/") for k in r.data.metrics) for r in children)

    rerun = run_cli(["--config-dir", str(store["outputs"]), "experiment=classification_optuna_best", "logger=none",
                     f"hydra.run.dir={tmp_path / 'best-again'}"])
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "best-again" / "metrics.jsonl").read_text().splitlines()]
    assert [row["val/loss_best"] for row in rows if "val/loss_best" in row][-1] == best.value


@pytest.mark.slow
def test_the_sweep_benchmark_compares_the_pipeline_with_a_hand_written_script(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["BENCHMARK_RESULTS_DIR"] = str(tmp_path)
    result = subprocess.run([sys.executable, "benchmarks/sweep.py", "--vs-plain", "--smoke"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "sweep_vs_plain_breast_cancer_smoke.json").read_text())
    [run] = report["by_trials"]["2"]["runs"]
    assert run["pipeline"] > 0 and run["plain"] > 0 and "2 of 2 trials finished" in run["pipeline_trials"]
    assert "| 2 | 1 | pipeline |" in result.stdout
