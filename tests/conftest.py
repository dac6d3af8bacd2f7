"""Shared fixtures."""

from __future__ import annotations

import os
import tempfile

import pytest
from builders import GLOBEX

from rooney_core.config import RooneyConfig, load_config
from rooney_core.sessions import SessionCalendar

# Tests never touch the repo's model store (dagster_home/storage/models) or a developer's.
os.environ["ROONEY_MODEL_STORE"] = tempfile.mkdtemp(prefix="rooney-test-models-")
for var in ("ROONEY_DATA_DIR", "ROONEY_LAKE_DIR", "ROONEY_EXECUTOR", "ROONEY_CONFIG_DIR"):
    os.environ.pop(var, None)


@pytest.fixture(scope="session")
def cfg() -> RooneyConfig:
    return load_config()


@pytest.fixture(scope="session")
def globex() -> SessionCalendar:
    return GLOBEX
