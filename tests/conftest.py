"""Shared fixtures."""

from __future__ import annotations

import pytest
from builders import GLOBEX

from rooney_core.config import RooneyConfig, load_config
from rooney_core.sessions import SessionCalendar


@pytest.fixture(scope="session")
def cfg() -> RooneyConfig:
    return load_config()


@pytest.fixture(scope="session")
def globex() -> SessionCalendar:
    return GLOBEX
