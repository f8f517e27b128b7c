"""The benchmark scripts (benchmarks/*.py) in their quick --smoke mode: each runs through the real
pipeline and reports the numbers BENCHMARKS.md is made of. The real measurements are not tests."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import PROJECT_ROOT


def run_benchmark(script: str, results_dir, data_dir, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(BENCHMARK_RESULTS_DIR=str(results_dir), PIPELINE_DATA_DIR=str(data_dir))
    result = subprocess.run([sys.executable, f"benchmarks/{script}", "--smoke", *args], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_overhead_reports_pipeline_over_plain_ratio_per_task_mlflow_cost_and_make_train(tmp_path, real_data_dir):
    # one task per loss (cross-entropy, binary cross-entropy, MSE) keeps the smoke run short
    result = run_benchmark("overhead.py", tmp_path, real_data_dir, "--tasks", "image", "classification", "regression",
                           "--vs-plain-train", "1")
    report = json.loads((tmp_path / "overhead.json").read_text())
    assert set(report["tasks"]) == {"image", "classification", "regression"}
    for task, measured in report["tasks"].items():
        for logger in ("mlflow", "none"):
            epochs = measured["by_logger"][logger]
            assert epochs["plain_epoch_s"] > 0 and epochs["pipeline_epoch_s"] > 0, (task, logger)
            assert epochs["ratio_epoch"] == epochs["pipeline_epoch_s"] / epochs["plain_epoch_s"]
            assert len(epochs["all_pipeline_epoch_s"]) == len(epochs["all_plain_epoch_s"]) == 2
        assert "mlflow_cost" in measured
    # both measured, in separate processes at separate times: on a loaded machine the imports alone, timed first,
    # have taken longer than the whole make train after them (7.9 s against 6.7 s), so they are not compared
    assert report["make_train"]["wall_s"][0] > 0 and report["import_s"] > 0
    assert report["make_train"]["max_peak_rss_mib"] > 50
    assert report["machine"]["cores"] >= 1 and report["machine"]["cpu"]
    assert "| image | FashionMNIST / CNN |" in result.stdout and "make train:" in result.stdout
    # make train against the hand-written script, both training the same (smoke: 1) epochs
    versus = report["make_train_vs_plain"]
    assert versus["epochs"] == 1 and len(versus["runs"]) == 1
    assert versus["median_ratio"] == versus["runs"][0]["make_train"] / versus["runs"][0]["plain"] > 0


def test_accuracy_prints_each_row_beside_its_anchor_and_keeps_every_fold(tmp_path, real_data_dir):
    result = run_benchmark("accuracy.py", tmp_path, real_data_dir, "--rows", "mr", "breast_cancer", "diabetes")
    mr = json.loads((tmp_path / "accuracy_mr_smoke.json").read_text())
    assert mr["folds_total"] == 10 and [f["fold"] for f in mr["folds"]] == [0, 1]
    assert all(0 <= f["test"] <= 1 for f in mr["folds"])
    diabetes = json.loads((tmp_path / "accuracy_diabetes_smoke.json").read_text())
    assert diabetes["folds_total"] == 5 and diabetes["mean"] <= 1
    assert "NBSVM-bigram 79.4" in result.stdout and "(2/10 folds)" in result.stdout
    assert "linear regression R² 0.489" in result.stdout

    # --validate reports the validation metric and never a test value
    validate = run_benchmark("accuracy.py", tmp_path, real_data_dir, "--rows", "breast_cancer", "--validate")
    chosen = json.loads((tmp_path / "validation_breast_cancer_smoke.json").read_text())
    assert chosen["folds"] and all("test" not in f and 0 <= f["val"] <= 1 for f in chosen["folds"])
    assert "val acc" in validate.stdout and "test acc" not in validate.stdout
    assert (tmp_path / "validation_log.jsonl").read_text().count("breast_cancer") == 1


def test_throughput_reports_samples_per_second_of_pipeline_and_plain_variants(tmp_path, real_data_dir):
    result = run_benchmark("throughput.py", tmp_path, real_data_dir)
    report = json.loads((tmp_path / "throughput.json").read_text())
    image = report["tasks"]["image"]["samples_per_s"]
    assert {"pipeline (mlflow)", "plain (alternating)", "plain eager", "plain channels_first"} <= set(image)
    assert "plain channels_first" not in report["tasks"]["sentiment"]["samples_per_s"]
    assert all(rate > 0 for task in report["tasks"].values() for rate in task["samples_per_s"].values())
    assert "samples/s" in result.stdout


def test_baselines_refit_the_anchor_methods_on_the_benchmark_folds(tmp_path, real_data_dir):
    result = run_benchmark("baselines.py", tmp_path, real_data_dir)
    rows = {line.split("|")[1].strip(): line for line in result.stdout.splitlines() if line.startswith("| ")}
    assert {"diabetes", "breast_cancer", "digits"} <= set(rows)
    assert "linear regression (OLS)" in rows["diabetes"] and "r2 0." in rows["diabetes"]
    assert "acc 0.9" in rows["breast_cancer"] and "acc 0.9" in rows["digits"]


def test_text_streaming_reports_peak_memory_of_each_mode(tmp_path):
    result = run_benchmark("text_streaming.py", tmp_path, tmp_path)  # a generated corpus: no real data needed
    report = json.loads((tmp_path / "text_streaming.json").read_text())
    assert [run["mode"] for run in report["runs"]] == ["memory", "stream_2_workers"]
    assert all(run["peak_rss_mib"] > 100 and run["peak_tree_pss_mib"] > 100 for run in report["runs"])
    assert all(0 <= run["test_acc"] <= 1 for run in report["runs"])
    assert "peak PSS, process + workers" in result.stdout


def test_default_anchors_refit_on_the_default_runs_rows(tmp_path, real_data_dir):
    result = run_benchmark("default_anchors.py", tmp_path, real_data_dir)
    assert "| diabetes | seed 42 hold-out | LinearRegression | R² 0.383 |" in result.stdout, result.stdout
    assert "| breast_cancer | 5 folds | LogisticRegression | acc 0.975 (" in result.stdout, result.stdout


def test_lightning_floor_times_plain_bare_lightning_and_manual_optimisation(tmp_path):
    result = run_benchmark("lightning_floor.py", tmp_path, tmp_path)  # breast_cancer ships with scikit-learn
    report = json.loads((tmp_path / "lightning_floor_smoke.json").read_text())
    assert set(report["epoch_s"]) == {"plain", "lightning", "lightning-manual"}
    assert all(len(seconds) == 1 and seconds[0] > 0 for seconds in report["epoch_s"].values())
    assert "| lightning | " in result.stdout and "| / plain, median |" in result.stdout
    assert all(len(ratios) == 1 and ratios[0] > 0 for ratios in report["ratio_to_plain"].values())


def test_lightning_floor_interleaves_plain_epochs_with_the_lightning_epochs(tmp_path):
    """--interleave: each Lightning epoch is compared with plain epochs run just before it, one per Lightning epoch."""
    run_benchmark("lightning_floor.py", tmp_path, tmp_path, "--interleave", "--output", "floor")
    report = json.loads((tmp_path / "floor_smoke.json").read_text())
    assert report["interleave"] is True and report["task"] == "classification"
    assert report["ratio_to_plain"]["plain"] == [1.0]
    assert all(seconds[0] > 0 for seconds in report["epoch_s"].values())


def test_written_columns_reads_each_column_in_bulk_as_one_cell_at_a_time(tmp_path):
    result = run_benchmark("written_columns.py", tmp_path, tmp_path)  # generated columns: no data set needed
    report = json.loads((tmp_path / "written_columns_smoke.json").read_text())
    assert set(report["columns"]) == {"thousands 1,234.56", "dollars $1,234.56", "percent 12.345%",
                                      "timestamps (days)", "continental 1.234,56 €", "timestamps (local parts)"}
    for measured in report["columns"].values():
        assert measured["rows"] == 20_000 and measured["median_s"]["bulk"] > 0 and measured["median_s"]["one by one"] > 0
    assert "| timestamps (days) | 20,000 |" in result.stdout and "bulk speed-up" in result.stdout


def test_intervals_benchmark_times_the_pipeline_and_a_loop_by_hand_that_agree(tmp_path):
    result = run_benchmark("intervals.py", tmp_path, tmp_path)  # generated predictions: no data set needed
    report = json.loads((tmp_path / "intervals_smoke.json").read_text())
    assert report["redraws"] == 100 and set(report["splits"]) == {"breast_cancer", "diabetes", "MR", "Adult",
                                                                  "Fashion-MNIST"}
    assert all(s["median_s"]["pipeline"] > 0 and s["median_s"]["by hand"] > 0 for s in report["splits"].values())
    assert "| Adult | 16,281 | binary |" in result.stdout


def test_thread_contention_benchmark_times_steps_quiet_and_beside_a_busy_process(tmp_path):
    result = run_benchmark("thread_contention.py", tmp_path, tmp_path)  # generated tensors: no data set needed
    report = json.loads((tmp_path / "thread_contention_smoke.json").read_text())
    mlp = report["models"]["mlp"]
    assert set(report["models"]) == {"mlp"} and 1 in report["threads"]
    assert set(mlp["median_ms"]) == {f"{machine}/{threads}" for machine in ("quiet", "busy")
                                     for threads in report["threads"]}
    assert all(ms > 0 for ms in mlp["median_ms"].values())
    assert mlp["reproducible_per_thread_count"]  # quiet or busy, one thread count gives one set of weights
    assert "| mlp | busy |" in result.stdout
