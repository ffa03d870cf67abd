"""Fixtures for the ops tests: a var dir of their own, an environment for children."""

from __future__ import annotations

import pytest


@pytest.fixture
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    return settings.VAR_DIR
