"""Shared pytest fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def real_data_dir() -> Path:
    """``PIPELINE_DATA_DIR`` (the real data sets, e.g. ../shared/data).

    Unset: the test is skipped, unless ``PIPELINE_REQUIRE_DATA=1`` (CI), where it fails.
    """
    value = os.environ.get("PIPELINE_DATA_DIR")
    if not value:
        message = "PIPELINE_DATA_DIR not set: point it at the real data (e.g. ../shared/data) to run this test"
        if os.environ.get("PIPELINE_REQUIRE_DATA") == "1":
            pytest.fail(message + " (PIPELINE_REQUIRE_DATA=1)")
        pytest.skip(message)
    path = Path(value)
    if not path.is_dir():
        pytest.fail(f"PIPELINE_DATA_DIR={value} is not a directory")
    return path
