"""Installed like a library: ``pip install .`` (a wheel, not an editable install) into a fresh virtual
environment, then ``pipeline-train`` started from an empty folder finds its packaged configs and writes
its outputs and MLflow store into that folder."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT

pytestmark = [pytest.mark.cli, pytest.mark.slow]


def test_a_wheel_in_a_fresh_venv_trains_from_an_empty_folder(tmp_path):
    # built from a copy: setuptools writes build/ next to the sources it builds
    source = tmp_path / "source"
    shutil.copytree(PROJECT_ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheels), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = wheels.glob("pipeline-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # torch, Lightning, MLflow ... come from this environment (installing them again would download GBs);
    # a .pth line adds its folder after the venv's own, and does not run the editable install's hook
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", site, str(wheel)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    where = subprocess.run([python, "-c", "import pipeline.config as c; print(c.__file__); print(c.CONFIG_DIR)"],
                           capture_output=True, text=True, check=True, cwd=tmp_path).stdout.split()
    assert where[0].startswith(site) and (Path(where[1]) / "config.yaml").is_file(), where

    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PIPELINE_"))}
    result = subprocess.run([python, "-m", "pipeline.cli.train", "trainer.max_epochs=1",
                             "logger.mlflow.log_model=false", "logger.mlflow.log_plots=false"],
                            cwd=empty, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Test metrics:" in result.stdout
    assert (empty / "mlruns" / "mlflow.db").is_file()
    [run_folder] = (empty / "outputs").glob("*/*")
    assert (run_folder / "checkpoints" / "last.ckpt").is_file() and (run_folder / "config.yaml").is_file()
