"""Fixtures and service markers for the whole suite.

Tests marked ``postgres``, ``redis`` or ``rabbitmq`` need that service. Without it they
are skipped on a laptop, and fail when ``CI=true``: in CI a missing service is a
failure, never a skip.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection

from tests.helpers import port_open

pytest_plugins = ["tests.personas"]

IN_CI = os.environ.get("CI", "").lower() == "true"


def service_missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing service is a failure, not a skip)")
    pytest.skip(reason)


def postgres_available() -> bool:
    return settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


def redis_url() -> str:
    return settings.REDIS_URL


@pytest.fixture(autouse=True)
def _require_services(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("postgres") and not postgres_available():
        service_missing("needs PostgreSQL: set DATABASE_URL=postgres://...")
    if request.node.get_closest_marker("redis"):
        if not redis_url():
            service_missing("needs Redis: set REDIS_URL=redis://...")
        if not port_open(redis_url(), 6379):
            service_missing(f"Redis at {redis_url()} does not answer")
    if request.node.get_closest_marker("rabbitmq"):
        url = os.environ.get("RABBITMQ_URL", "")
        if not url:
            service_missing("needs RabbitMQ: set RABBITMQ_URL=amqp://...")
        if not port_open(url, 5672):
            service_missing(f"RabbitMQ at {url} does not answer")


@pytest.fixture(autouse=True)
def _isolated_storage(settings, tmp_path_factory) -> None:
    """Media and backups in a temporary folder: no test writes into the checkout's var/."""
    if settings.AWS_STORAGE_BUCKET_NAME:
        return
    root = tmp_path_factory.mktemp("storage")
    local = "django.core.files.storage.FileSystemStorage"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": local, "OPTIONS": {"location": str(root / "media")}},
        "backups": {"BACKEND": local, "OPTIONS": {"location": str(root / "backups")}},
    }


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    yield
    cache.clear()


@pytest.fixture
def base_env() -> dict:
    """The environment for a child process: this one's, minus Django's settings module."""
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def server_url() -> str:
    """The URL of the PostgreSQL server this test runs on, without a database."""
    db = connection.settings_dict
    user = quote(db.get("USER") or "", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}{port}"


def database_url(name: str | None = None) -> str:
    """The URL of database ``name`` on that server (by default the one this test runs
    on, the test database), for a child."""
    return f"{server_url()}/{name or connection.settings_dict['NAME']}"


@pytest.fixture
def broker_env(base_env: dict) -> dict:
    """A child's environment: Redis broker on REDIS_URL's database, this test's DB."""
    return {
        **base_env,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "CELERY_BROKER_URL": settings.REDIS_URL,
        "DATABASE_URL": database_url(),
    }


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
        cwd=settings.BASE_DIR,
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
