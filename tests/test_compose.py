"""The compose files, read without an engine: what they reference exists.

The compose test (make test-compose, e2e/) runs them on a real engine.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = {
    "local.yml": {
        "django",
        "postgres",
        "redis",
        "celeryworker",
        "celerybeat",
        "flower",
        "s3",
    },
    "production.yml": {
        "django",
        "postgres",
        "redis",
        "celeryworker",
        "celerybeat",
        "flower",
        "caddy",
    },
}


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def dockerfile_copies(dockerfile: Path) -> list[tuple[str, str]]:
    """Return (source, destination) of each COPY line that copies from the build context."""
    pairs = []
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY") and "--from=" not in line:
            parts = [p for p in line.split()[1:] if not p.startswith("--")]
            pairs.append((parts[0], parts[-1]))
    return pairs


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_compose_file_has_every_service(name):
    assert set(load(name)["services"]) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_referenced_file_exists(name):
    compose = load(name)
    for service, spec in compose["services"].items():
        for env_file in spec.get("env_file", []):
            path = ROOT / env_file
            # Production env files are made by the operator from committed templates.
            assert path.exists() or Path(f"{path}.template").exists(), (
                f"{service}: {env_file}"
            )
        build = spec.get("build")
        if build:
            dockerfile = ROOT / build["dockerfile"]
            assert dockerfile.exists(), f"{service}: {dockerfile}"
            for source, _ in dockerfile_copies(dockerfile):
                assert (ROOT / source.lstrip("./")).exists() or source == ".", (
                    f"{dockerfile}: {source}"
                )
        command = spec.get("command")
        if isinstance(command, str) and command.startswith("/start"):
            copied = {dest for _, dest in dockerfile_copies(ROOT / build["dockerfile"])}
            assert command in copied, (
                f"{service}: {command} is not copied into the image"
            )


def all_scripts() -> list[Path]:
    scripts = [
        p
        for p in (ROOT / "compose").rglob("*")
        if p.is_file() and p.name in {"entrypoint", "start"}
    ]
    return sorted(scripts + [ROOT / ".ci" / "run"])


@pytest.mark.parametrize(
    "script", all_scripts(), ids=lambda p: str(p.relative_to(ROOT))
)
def test_scripts_are_valid_bash(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert script.stat().st_mode & 0o111, f"{script} is not executable"


def test_local_env_files_are_committed_and_templates_hold_placeholders_only():
    assert (ROOT / ".envs/.local/.django").exists()
    assert (ROOT / ".envs/.local/.postgres").exists()
    for template in (ROOT / ".envs/.production").glob("*.template"):
        for line in template.read_text().splitlines():
            if line.startswith("#") or not line.strip():
                continue
            key, _, value = line.partition("=")
            if re.search(r"SECRET|PASSWORD", key):
                assert value.startswith("<"), (
                    f"{template.name}: {key} must be a placeholder"
                )


def test_entrypoint_waits_for_postgres_with_a_bounded_retry(tmp_path):
    """Run the real entrypoint on the host against a port nobody listens on."""
    env = {
        **os.environ,
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PORT": "1",
        "POSTGRES_USER": "x",
        "POSTGRES_DB": "x",
        "POSTGRES_WAIT_TRIES": "2",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        ["bash", str(ROOT / "compose/production/django/entrypoint"), "echo", "started"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "did not answer after 2 tries" in result.stderr
    assert "started" not in result.stdout


@pytest.mark.parametrize("flavour", ["local", "production"])
def test_beat_waits_for_the_migrations_before_it_starts(flavour):
    # Beat reads its tables at once; local.yml restarts nothing, so a beat that beat
    # the django container's migrate stayed dead (seen in the compose test).
    lines = (ROOT / f"compose/{flavour}/django/celery/beat/start").read_text()
    commands = [line for line in lines.splitlines() if line and line[0] != "#"]
    waits = commands.index("python -m apps.jobs.wait_migrated")
    assert commands[waits + 1].startswith("exec celery -A config.celery_app beat")


def test_every_production_service_has_a_restart_policy():
    for service, spec in load("production.yml")["services"].items():
        assert spec.get("restart") == "unless-stopped", service


def test_production_publishes_ports_only_through_caddy():
    for service, spec in load("production.yml")["services"].items():
        if service != "caddy":
            assert not spec.get("ports"), service
