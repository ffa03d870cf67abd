import json
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.management import CommandError

from tests.helpers import call


@pytest.mark.django_db
def test_info_lists_versions_label_and_components():
    output = call("info")
    assert "Django" in output and "Celery" in output and "Channels" in output
    assert f"{settings.STAGEHAND_COMMIT}.{settings.STAGEHAND_ENVIRONMENT}" in output
    for component in ("database", "cache", "channel layer", "broker", "storage"):
        assert component in output
    assert "All configured components answer." in output


@pytest.mark.django_db
def test_info_json_is_parseable_and_ok():
    data = json.loads(call("info", "--json"))
    assert data["ok"] is True
    assert data["deploy_label"] == "unknown.test"
    statuses = {c["name"]: c["status"] for c in data["components"]}
    assert statuses["database"] == "ok"
    assert statuses["cache"] == "ok"


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db
def test_info_on_postgres_and_redis_shows_ok_rows():
    data = json.loads(call("info", "--json"))
    rows = {c["name"]: c for c in data["components"]}
    assert rows["database"]["backend"] == "postgresql"
    assert rows["database"]["status"] == "ok"
    assert rows["cache"]["backend"] == "RedisCache"
    assert rows["cache"]["status"] == "ok"
    assert rows["channel layer"]["backend"] == "RedisChannelLayer"
    assert rows["channel layer"]["status"] == "ok"


@pytest.mark.django_db
def test_info_never_prints_the_database_password(base_env):
    env = {
        **base_env,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": "postgres://someone:hunter2secret@127.0.0.1:1/nowhere",
        "REDIS_URL": "",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "info"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "hunter2secret" not in result.stdout + result.stderr
    assert "database" in result.stdout and "unavailable" in result.stdout


def test_info_with_unreachable_redis_fails_clearly(base_env, tmp_path):
    env = {
        **base_env,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REDIS_URL": "redis://127.0.0.1:1/0",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "info"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    cache_row = next(
        line for line in result.stdout.splitlines() if line.startswith("cache")
    )
    assert "unavailable" in cache_row and "Connection" in cache_row
    assert "did not answer" in result.stderr


@pytest.mark.django_db
def test_info_exit_code_is_nonzero_when_a_component_fails(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }
    with pytest.raises(CommandError, match="cache did not answer") as raised:
        call("info")
    assert raised.value.returncode == 2
