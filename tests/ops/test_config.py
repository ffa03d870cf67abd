"""`manage.py config`: what the settings read from the environment, masked, with its source."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.helpers import call, manage
from tests.test_configuration_docs import variables_read_by_settings

SECRET_KEY = "x9!Fq2@Lr7#Vm4$Tz8%Wb1^Hc6&Jn3*Pd5(Ks0)Yg-e_u+i=o~a;s:d,f.g/h"


def config(env: dict, *args: str) -> subprocess.CompletedProcess:
    return manage(env, "config", *args, timeout=60)


def production_env(base_env: dict, tmp_path: Path) -> dict:
    secret_file = tmp_path / "secret_key"
    secret_file.write_text(SECRET_KEY)
    env = {
        k: v
        for k, v in base_env.items()
        if not k.startswith(("DJANGO_", "AWS_", "STAGEHAND_", "CELERY_", "EMAIL_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY_FILE=str(secret_file),
        DJANGO_ALLOWED_HOSTS="stagehand.example.com,www.stagehand.example.com",
        DATABASE_URL="postgres://stagehand:db-pass-77@db.internal:5432/stagehand",
        REDIS_URL="redis://cache.internal:6379/0?password=redis-pass-88",
        EMAIL_URL="smtp+tls://mailer:mail-pass-99@smtp.example.org:587",
        AWS_STORAGE_BUCKET_NAME="stagehand-media",
        AWS_ACCESS_KEY_ID="AKIASTAGEHAND",
        AWS_SECRET_ACCESS_KEY="aws-secret-55",
        STAGEHAND_VAR_DIR=str(tmp_path),
    )
    return env


def test_json_lists_what_the_settings_read_with_source_and_masked_values(
    base_env, tmp_path
):
    result = config(production_env(base_env, tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    variables = {v["name"]: v for v in json.loads(result.stdout)}
    # Exactly what the settings modules read: production reads all but test-only ones.
    assert set(variables) == variables_read_by_settings()
    assert variables["DJANGO_SECRET_KEY"]["source"] == "file"
    assert variables["DJANGO_SECRET_KEY"]["file"] == str(tmp_path / "secret_key")
    assert variables["DJANGO_SECRET_KEY"]["value"] == "***"
    assert variables["DJANGO_SECRET_KEY"]["required"] is True
    assert variables["DATABASE_URL"] == {
        "name": "DATABASE_URL",
        "value": "postgres://stagehand:***@db.internal:5432/stagehand",
        "source": "environment",
        "file": None,
        "default": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "required": False,
    }
    assert variables["REDIS_URL"]["value"] == (
        "redis://cache.internal:6379/0?password=***"
    )
    assert variables["EMAIL_URL"]["value"] == (
        "smtp+tls://mailer:***@smtp.example.org:587"
    )
    assert variables["DJANGO_ALLOWED_HOSTS"]["value"] == [
        "stagehand.example.com",
        "www.stagehand.example.com",
    ]
    # production.py's own default wins over base.py's.
    assert variables["STAGEHAND_ENVIRONMENT"]["value"] == "production"
    assert variables["CONN_MAX_AGE"]["value"] == 60
    assert variables["DJANGO_DEBUG"] == {
        "name": "DJANGO_DEBUG",
        "value": False,
        "source": "default",
        "file": None,
        "default": False,
        "required": False,
    }
    assert variables["AWS_SECRET_ACCESS_KEY"]["value"] == "***"
    assert variables["AWS_ACCESS_KEY_ID"]["value"] == "AKIASTAGEHAND"
    for secret in (
        "db-pass-77",
        "redis-pass-88",
        "mail-pass-99",
        "aws-secret-55",
        SECRET_KEY,
    ):
        assert secret not in result.stdout


def test_the_table_is_aligned_in_reading_order_and_masked(base_env, tmp_path):
    result = config(production_env(base_env, tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["Variable", "Value", "Source"]
    value_column = lines[0].index("Value")
    rows = {line.split()[0]: line for line in lines[1:]}
    assert all(line[value_column - 2 : value_column] == "  " for line in lines[1:])
    names = [line.split()[0] for line in lines[1:]]
    # base.py first (its var dir before everything), production.py's own last.
    assert names[0] == "STAGEHAND_VAR_DIR"
    assert names.index("DATABASE_URL") < names.index("DJANGO_SECURE_SSL_REDIRECT")
    assert rows["DJANGO_SECRET_KEY"].split()[1:] == [
        "***",
        "file",
        str(tmp_path / "secret_key"),
    ]
    assert rows["DATABASE_URL"].split()[1:] == [
        "postgres://stagehand:***@db.internal:5432/stagehand",
        "environment",
    ]
    assert rows["DJANGO_DEBUG"].split()[1:] == ["False", "default"]
    assert "db-pass-77" not in result.stdout
    assert SECRET_KEY not in result.stdout


def test_show_secrets_prints_them_only_when_asked(base_env, tmp_path):
    result = config(production_env(base_env, tmp_path), "--json", "--show-secrets")
    assert result.returncode == 0, result.stderr
    variables = {v["name"]: v for v in json.loads(result.stdout)}
    assert variables["DJANGO_SECRET_KEY"]["value"] == SECRET_KEY
    assert variables["DATABASE_URL"]["value"] == (
        "postgres://stagehand:db-pass-77@db.internal:5432/stagehand"
    )


def test_config_in_process_reflects_this_process_environment():
    variables = {v["name"]: v for v in json.loads(call("config", "--json"))}
    assert "SEARCH_MAX_FIELD_CHARS" in variables
    assert variables["DJANGO_LOG_LEVEL"]["source"] in {"default", "environment"}
