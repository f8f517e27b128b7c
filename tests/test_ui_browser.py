"""The MLflow UI started by ``pipeline-ui``, in a real (headless) Chromium: the runs are there.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them). The screenshot goes
to a temporary folder, or to docs/mlflow-ui.png (shown in the README) with PIPELINE_UPDATE_SCREENSHOT=1.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import PROJECT_ROOT, compose_for_train, free_port, new_store, runs_in

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_ARGUMENTS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--window-size=1600,800"]
METRIC_COLUMN = "test/acc"
EXTRA_COLUMNS = ("val/loss", "optimizer.lr")  # for a screenshot that shows what differs


@pytest.fixture(scope="module")
def store_with_runs(tmp_path_factory, migrated_store_db) -> dict:
    """Three short real trainings (one optimizer each) in a fresh store."""
    from pipeline.train import train

    folder = tmp_path_factory.mktemp("ui")
    store = new_store(folder, migrated_store_db)
    for optimizer in ("adam", "sgd", "rmsprop"):
        train(compose_for_train(dict(store, outputs=folder / optimizer), [
            f"optimizer={optimizer}", "trainer.max_epochs=2", "logger.mlflow.log_model=false", "logger.mlflow.log_plots=false"]))
    return store


@pytest.fixture
def ui(store_with_runs):
    """``pipeline-ui --port <free>`` on the test store; its URL once it answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli.ui", "--port", str(port), "--tracking-uri", store_with_runs["uri"]],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = None
    try:
        for line in process.stdout:  # the command prints the URL once the server answers
            if line.startswith("MLflow UI:"):
                url = line.split()[2]
                break
        assert url == f"http://127.0.0.1:{port}", f"pipeline-ui did not come up (exit code {process.poll()})"
        yield url
    finally:
        process.send_signal(signal.SIGTERM)  # pipeline-ui stops the server it started
        process.wait(timeout=30)


def test_ui_shows_the_runs_with_their_metrics(ui, store_with_runs, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    runs = runs_in(store_with_runs, "classification")
    assert len(runs) == 3
    options = Options()
    options.binary_location = CHROMIUM
    for argument in CHROME_ARGUMENTS + [f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(f"{ui}/#/experiments/{runs[0].info.experiment_id}/runs")
        page = WebDriverWait(driver, 90, poll_frequency=0.5)

        def body_text() -> str:
            return driver.find_element(By.TAG_NAME, "body").text

        page.until(lambda _: all(run.info.run_name in body_text() for run in runs),
                   message="the run table with the run names did not appear")
        assert "3 matching runs" in body_text() and METRIC_COLUMN not in body_text()
        close_assistant_panel(driver)
        # MLflow 3 shows metric columns once picked in its Columns menu, as a user would
        [columns] = [b for b in driver.find_elements(By.TAG_NAME, "button") if b.text.strip() == "Columns"]
        columns.click()
        for column in (METRIC_COLUMN, *EXTRA_COLUMNS):
            item = page.until(lambda _: [e for e in driver.find_elements(By.XPATH, f"//span[text()='{column}']")
                                         if e.is_displayed()], message=f"{column} is not in the Columns menu")
            # scrolled into the middle and clicked there: MLflow's floating assistant button may cover the list's end
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();", item[0])
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
        page.until(lambda _: not [e for e in driver.find_elements(By.CLASS_NAME, "du-bois-light-tree-title")
                                  if e.is_displayed()], message="the Columns menu did not close")
        assert METRIC_COLUMN in body_text(), "no metric column in the run table"
        shown = [f"{run.data.metrics[METRIC_COLUMN]:.6f}"[:6] for run in runs]  # the UI cuts values off, unrounded
        assert all(value in body_text() for value in shown), (shown, body_text()[-800:])
        screenshot = tmp_path / "mlflow-ui.png"
        driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
    assert screenshot.read_bytes()[:4] == b"\x89PNG" and screenshot.stat().st_size > 20_000
    if os.environ.get("PIPELINE_UPDATE_SCREENSHOT") == "1":
        (PROJECT_ROOT / "docs").mkdir(exist_ok=True)
        shutil.copy(screenshot, PROJECT_ROOT / "docs" / "mlflow-ui.png")


def close_assistant_panel(driver) -> None:
    """MLflow 3 opens an assistant beside the runs; the screenshot is about the runs."""
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.CSS_SELECTOR, "button[aria-label='Close']"):
        if button.is_displayed():
            button.click()
            time.sleep(0.5)
            return
