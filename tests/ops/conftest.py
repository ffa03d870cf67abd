"""Fixtures for the ops tests: a var dir of their own, an environment for children."""

from __future__ import annotations

import pytest


@pytest.fixture
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    return settings.VAR_DIR


@pytest.fixture
def child_env(base_env, tmp_path) -> dict:
    """Embedded defaults for a backend in its own var dir (no broker, no Redis)."""
    env = {
        **base_env,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "STAGEHAND_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    for name in ("REDIS_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)
    return env
