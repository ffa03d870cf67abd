"""Fixtures for the jobs tests: temporary jobs, and helpers for child processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings

from apps.jobs import registry
from config.celery_app import app

BASE_DIR = Path(settings.BASE_DIR)


@pytest.fixture
def temp_job() -> Iterator[Callable[..., registry.Job]]:
    """Register jobs for one test only (unless the project already has that name)."""
    added: list[str] = []

    def register(name: str, func: Callable | None = None) -> registry.Job:
        if name in registry.REGISTRY:
            return registry.REGISTRY[name]

        def default(*args, **kwargs):
            return f"{name} {list(args)} {kwargs}"

        registry.job(name, f"Test job {name}.")(func or default)
        added.append(name)
        return registry.REGISTRY[name]

    yield register
    for name in added:
        job = registry.REGISTRY.pop(name)
        app.tasks.pop(job.task_name, None)


@pytest.fixture
def params_job(temp_job) -> registry.Job:
    """A job that takes any parameters, for tests of how schedules keep them."""
    return temp_job("params-test")
