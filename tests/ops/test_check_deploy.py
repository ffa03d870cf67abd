"""`check --deploy` fails while a template's <placeholder> is left in a setting."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers import manage

ROOT = Path(__file__).resolve().parent.parent.parent
TEMPLATES = ROOT / ".envs" / ".production"


def template(name: str) -> dict[str, str]:
    values = {}
    for line in (TEMPLATES / name).read_text().splitlines():
        key, equals, value = line.partition("=")
        if equals and not key.startswith("#"):
            values[key] = value
    return values


def check_deploy(
    base_env: dict, tmp_path: Path, **env: str
) -> subprocess.CompletedProcess:
    return manage(
        {
            **{k: v for k, v in base_env.items() if not k.startswith("AWS_")},
            "DATABASE_URL": "sqlite:///:memory:",
            "STAGEHAND_VAR_DIR": str(tmp_path),
            **env,
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
        },
        "check",
        "--deploy",
    )


# A production environment with every placeholder the settings need filled in.
FILLED = {
    "DJANGO_SECRET_KEY": "x9!Fq2@Lr7#Vm4$Tz8%Wb1^Hc6&Jn3*Pd5(Ks0)Yg-e_u+i=o~a;s:d,f.g/h",
    "DJANGO_ALLOWED_HOSTS": "stagehand.example.com",
    "DJANGO_ADMIN_URL": "ops-3f9a/",
}


def test_the_template_as_it_is_fails_naming_each_variable(base_env, tmp_path):
    django = template(".django.template")
    result = check_deploy(base_env, tmp_path, **django)
    assert result.returncode != 0
    out = result.stderr + result.stdout
    for name, value in django.items():
        if "<" not in value:
            continue
        if name in {"CELERY_FLOWER_USER", "CELERY_FLOWER_PASSWORD"}:
            continue  # read by Flower's start script, not by the settings
        assert f"{name} still holds the template's placeholder" in out, name
        assert "replace it in .envs/.production/.django." in out
    assert (
        "DJANGO_ALLOWED_HOSTS still holds the template's placeholder "
        "<stagehand.example.com>; replace it in .envs/.production/.django." in out
    )
    # A secret's placeholder is no secret, but the value is masked all the same.
    assert "DJANGO_SECRET_KEY still holds the template's placeholder (not shown)" in out


def test_one_placeholder_left_is_enough_to_fail(base_env, tmp_path):
    result = check_deploy(
        base_env,
        tmp_path,
        **FILLED,
        DJANGO_CSRF_TRUSTED_ORIGINS="<https://stagehand.example.com>",
    )
    assert result.returncode != 0
    assert (
        "ops.E001) DJANGO_CSRF_TRUSTED_ORIGINS still holds the template's placeholder "
        "<https://stagehand.example.com>; replace it in .envs/.production/.django."
    ) in result.stderr
    assert "DJANGO_ALLOWED_HOSTS" not in result.stderr


def test_a_database_url_built_from_the_postgres_template_names_its_file(
    base_env, tmp_path
):
    # The entrypoint builds DATABASE_URL from .postgres; the password stays masked.
    postgres = template(".postgres.template")
    url = (
        f"postgres://{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}"
        f"@postgres:5432/stagehand"
    )
    result = check_deploy(
        base_env,
        tmp_path,
        **FILLED,
        DATABASE_URL=url,
    )
    assert result.returncode != 0
    assert (
        "DATABASE_URL still holds the template's placeholder <database user>; "
        "replace it in .envs/.production/.postgres (POSTGRES_USER)."
    ) in result.stderr
    assert "<database password>" not in result.stderr


@pytest.mark.parametrize("secret", ["ab<cd>ef-0123456789-0123456789-0123456789-01234"])
def test_a_secret_with_angle_brackets_is_never_printed(base_env, tmp_path, secret):
    secret_file = tmp_path / "secret"
    secret_file.write_text(secret)
    result = check_deploy(
        base_env,
        tmp_path,
        DJANGO_SECRET_KEY_FILE=str(secret_file),
        DJANGO_ALLOWED_HOSTS="stagehand.example.com",
        DJANGO_ADMIN_URL="ops-3f9a/",
    )
    # Brackets inside a value are no placeholder (only a whole <value> is), and the
    # secret is printed nowhere.
    assert "<cd>" not in result.stdout + result.stderr
    assert "DJANGO_SECRET_KEY" not in result.stdout + result.stderr


def test_a_value_with_brackets_that_is_no_placeholder_passes(base_env, tmp_path):
    result = check_deploy(
        base_env,
        tmp_path,
        **FILLED,
        DJANGO_DEFAULT_FROM_EMAIL="Stagehand <stagehand@example.org>",
    )
    assert "DJANGO_DEFAULT_FROM_EMAIL" not in result.stderr, result.stderr
