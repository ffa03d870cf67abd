"""Every settings module loads, and production passes `check --deploy` cleanly."""

import subprocess
import sys
from pathlib import Path

import environ
import pytest

from apps.core.environment import postgres_url

ROOT = Path(__file__).resolve().parent.parent

PRODUCTION_ENV = {
    "DJANGO_SECRET_KEY": "x9!Fq2@Lr7#Vm4$Tz8%Wb1^Hc6&Jn3*Pd5(Ks0)Yg-e_u+i=o~a;s:d,f.g/h",
    "DJANGO_ALLOWED_HOSTS": "stagehand.example.com",
    "DJANGO_ADMIN_URL": "ops-3f9a/",
    "DATABASE_URL": "sqlite:///:memory:",
}


def run_python(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("module", ["base", "local", "test", "production"])
def test_settings_module_loads(module, base_env, tmp_path):
    env = {
        **base_env,
        "DJANGO_SETTINGS_MODULE": f"config.settings.{module}",
        "STAGEHAND_VAR_DIR": str(tmp_path),
        **PRODUCTION_ENV,
    }
    result = run_python(
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.AUTH_USER_MODEL, settings.STAGEHAND_COMMIT)",
        env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["accounts.User", "unknown"]


def test_embedded_defaults_need_no_server(base_env, tmp_path):
    env = {
        k: v
        for k, v in base_env.items()
        if k
        not in {
            "DATABASE_URL",
            "REDIS_URL",
            "CELERY_BROKER_URL",
            "AWS_STORAGE_BUCKET_NAME",
        }
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.local", STAGEHAND_VAR_DIR=str(tmp_path)
    )
    result = run_python(
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.CACHES['default']['BACKEND'], "
        "s.CHANNEL_LAYERS['default']['BACKEND'], s.STAGEHAND_HAS_BROKER, s.MEDIA_ROOT)",
        env,
    )
    assert result.returncode == 0, result.stderr
    engine, cache, layer, broker, media = result.stdout.split()
    assert engine == "django.db.backends.sqlite3"
    assert cache.endswith("LocMemCache")
    assert layer.endswith("InMemoryChannelLayer")
    assert broker == "False"
    assert media.startswith(str(tmp_path))


def test_services_come_from_the_environment(base_env, tmp_path):
    env = {
        **base_env,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": "postgres://u:p@db.internal:5433/stagehand",
        "REDIS_URL": "redis://cache.internal:6379/2",
        "CELERY_BROKER_URL": "amqp://guest:guest@mq.internal:5672//",
        "AWS_STORAGE_BUCKET_NAME": "bucket",
        "STAGEHAND_COMMIT": "abc123",
        "STAGEHAND_ENVIRONMENT": "staging",
    }
    result = run_python(
        "import django; django.setup(); from django.conf import settings as s; "
        "from apps.ops.services import deploy_label; "
        "print(s.DATABASES['default']['HOST'], s.CACHES['default']['LOCATION'], "
        "s.CHANNEL_LAYERS['default']['BACKEND'], s.STAGEHAND_HAS_BROKER, "
        "s.STORAGES['default']['BACKEND'], deploy_label())",
        env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "db.internal",
        "redis://cache.internal:6379/2",
        "apps.connections.layer.RedisChannelLayer",
        "True",
        "storages.backends.s3.S3Storage",
        "abc123.staging",
    ]


def test_secrets_are_read_from_file_variants(base_env, tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file-0123456789")
    env = {
        **base_env,
        **PRODUCTION_ENV,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
    }
    del env["DJANGO_SECRET_KEY"]
    env["DJANGO_SECRET_KEY_FILE"] = str(secret_file)
    result = run_python(
        "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)",
        env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "from-a-file-0123456789"


def test_production_without_a_secret_key_refuses_to_start(base_env):
    env = {
        **base_env,
        **PRODUCTION_ENV,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
    }
    del env["DJANGO_SECRET_KEY"]
    result = run_python("import django; django.setup()", env)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_production_passes_check_deploy_with_zero_warnings(base_env):
    env = {
        **base_env,
        **PRODUCTION_ENV,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_the_database_url_comes_from_postgres_variables_when_no_database_url():
    """docker compose exec bypasses the entrypoint: the settings build the URL too."""
    environ_vars = {
        "POSTGRES_HOST": "postgres",
        "POSTGRES_USER": "stage hand",
        "POSTGRES_PASSWORD": "p@ss/w:rd%",
        "POSTGRES_DB": "stagehand",
    }
    env = environ.Env()
    env.ENVIRON = environ_vars
    url = postgres_url(env)
    assert url == "postgres://stage%20hand:p%40ss%2Fw%3Ard%25@postgres:5432/stagehand"
    parsed = environ.Env.db_url_config(url)
    assert (parsed["USER"], parsed["PASSWORD"], parsed["HOST"]) == (
        "stage hand",
        "p@ss/w:rd%",
        "postgres",
    )
    env.ENVIRON = {}
    assert postgres_url(env) == ""
