"""Fixtures and service markers for the whole suite.

Tests marked ``postgres``, ``redis`` or ``rabbitmq`` need that service. Without it they
are skipped on a laptop, and fail when ``CI=true``: in CI a missing service is a
failure, never a skip.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest
from django.conf import settings

IN_CI = os.environ.get("CI", "").lower() == "true"


def service_missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing service is a failure, not a skip)")
    pytest.skip(reason)


def port_open(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), timeout=2
        ):
            return True
    except OSError:
        return False


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
    from django.core.cache import cache

    yield
    cache.clear()


@pytest.fixture
def alice(db):
    """Alice, the operator: staff and superuser."""
    from apps.accounts.models import User

    return User.objects.create_superuser(
        "alice", "alice@example.org", "correct horse battery"
    )


@pytest.fixture
def base_env() -> dict:
    """The environment for a child process: this one's, minus Django's settings module."""
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env
