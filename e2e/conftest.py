"""The production stack of the compose test, brought up once for the session.

What an operator does on a new host, in a copy of the repository: the env files made
from the templates (every placeholder given a value), the images built, the stack up.
Only the compose test's own override (e2e/production.e2e.yml) adds what production gets
from outside: an S3 store (moto), a mail sink, and ports on 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.stack import ROOT, Stack, copy_checkout, record, sh

DOMAIN = "stagehand.test"
# Planted in every production env file; the image must not contain it.
MARKER = f"planted-secret-{secrets.token_hex(8)}"

# The value the test gives each template placeholder. A new placeholder fails here
# until it gets one, so the templates and the test cannot drift apart.
TEST_VALUES = {
    "DJANGO_SECRET_KEY": f"{MARKER}-{secrets.token_urlsafe(48)}",
    "DJANGO_ADMIN_URL": "ops-e2e/",
    "DJANGO_ALLOWED_HOSTS": DOMAIN,
    "DJANGO_CSRF_TRUSTED_ORIGINS": f"https://{DOMAIN}",
    "CELERY_FLOWER_USER": "flower",
    "CELERY_FLOWER_PASSWORD": f"{MARKER}-flower",
    "AWS_STORAGE_BUCKET_NAME": "stagehand-e2e",
    "AWS_ACCESS_KEY_ID": "e2e-access-key",
    "AWS_SECRET_ACCESS_KEY": f"{MARKER}-s3",
    "AWS_S3_REGION_NAME": "us-east-1",
    "EMAIL_URL": "smtp://mail:1025",
    "DJANGO_DEFAULT_FROM_EMAIL": f"Stagehand <stagehand@{DOMAIN}>",
    "POSTGRES_USER": "stagehand",
    "POSTGRES_PASSWORD": f"{MARKER}-p@ss/w:rd",
    "DOMAIN_NAME": DOMAIN,
    "ACME_EMAIL": "ops@stagehand.test",
}
# Beyond the templates: what only the test's stand-ins need.
EXTRA = {
    ".django": {"AWS_S3_ENDPOINT_URL": "http://s3:5000", "BACKUP_SCHEDULE": "@daily"},
    ".caddy": {"CADDY_TLS": "internal"},
}
PLACEHOLDER = re.compile(r"^([A-Z0-9_]+)=<.*>$")


def env_files_from_templates(directory: Path) -> None:
    """Write .envs/.production/<name> from <name>.template, as docs/deploy.md says."""
    for template in sorted((directory / ".envs/.production").glob("*.template")):
        lines = []
        for line in template.read_text().splitlines():
            match = PLACEHOLDER.match(line)
            if match:
                key = match.group(1)
                assert key in TEST_VALUES, f"{template.name}: no test value for {key}"
                line = f"{key}={TEST_VALUES[key]}"
            lines.append(line)
        name = template.name.removesuffix(".template")
        record(f"cp .envs/.production/{template.name} .envs/.production/{name}")
        for key, value in EXTRA.get(name, {}).items():
            lines = [line for line in lines if not line.startswith(f"{key}=")]
            lines.append(f"{key}={value}")
        (template.parent / name).write_text("\n".join(lines) + "\n")


def plant_dev_files(directory: Path) -> None:
    """What an operator's checkout holds and the image must not: .venv, .git, var/."""
    for name in (".venv/lib/marker", ".git/marker", "var/marker"):
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(MARKER)


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="stagehand-compose-") as tmp:
        yield Path(tmp)


@pytest.fixture(scope="session")
def production(workdir: Path) -> Iterator[Stack]:
    directory = copy_checkout(workdir / "production")
    plant_dev_files(directory)
    env_files_from_templates(directory)
    stack = Stack(
        directory=directory,
        file="production.yml",
        project=f"stagehand_e2e_{os.getpid()}",
        overrides=[str(ROOT / "e2e/production.e2e.yml")],
        env={
            # Random free ports on loopback only.
            "CADDY_HTTP_PUBLISH": "127.0.0.1:",
            "CADDY_HTTPS_PUBLISH": "127.0.0.1:",
            "CADDY_FLOWER_PUBLISH": "127.0.0.1:",
            "STAGEHAND_COMMIT": "e2e0001",
        },
    )
    try:
        yield stack
    finally:
        logs = stack.compose("logs", "--no-color", "--tail", "200", check=False).stdout
        (ROOT / "var").mkdir(exist_ok=True)
        (ROOT / "var/compose-production.log").write_text(logs)
        stack.compose("down", "-v", "--remove-orphans", "--timeout", "20", check=False)


@pytest.fixture(scope="session")
def image_size(production: Stack) -> int:
    out = sh(
        "docker", "image", "inspect", "-f", "{{.Size}}", "stagehand_production_django"
    )
    return int(out.stdout.strip())
