"""Fixtures for the jobs tests: temporary jobs, and child processes on real services."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings

from apps.jobs import registry

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
    from config.celery_app import app

    for name in added:
        job = registry.REGISTRY.pop(name)
        app.tasks.pop(job.task_name, None)


def database_url() -> str:
    """The URL of the database this test uses, for a child process."""
    db = settings.DATABASES["default"]
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}{port}/{db['NAME']}"


@pytest.fixture
def broker_env(base_env: dict) -> dict:
    """A child's environment: Redis broker on REDIS_URL's database, this test's DB."""
    return {
        **base_env,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "CELERY_BROKER_URL": settings.REDIS_URL,
        "DATABASE_URL": database_url(),
    }


def manage(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def celery_worker(broker_env: dict) -> Iterator[subprocess.Popen]:
    """A real `worker start` process on the Redis broker, stopped after the test."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "worker",
            "start",
            "--pool=solo",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel=WARNING",
            f"--hostname=jobs-test-{os.getpid()}@%h",
        ],
        cwd=BASE_DIR,
        env=broker_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 90) -> object:
    """Poll until predicate() is truthy; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")
