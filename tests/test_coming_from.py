"""Every Stagehand command docs/coming-from.md shows is run here, as it is written.

The commands are read from the tables (the `manage.py …` code spans of the Stagehand
column) and each belongs to exactly one of the runs below: in this process on the test
database, in a child process on a fresh SQLite database (commands that are not
``call_command``'s: ``help``, a shell, ``migrate_safely``), with Redis (connections),
or with a Redis broker and a real worker. A row added to the guide without a run here
fails ``test_every_command_of_the_guide_is_run``.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from apps.connections.registry import get_registry
from apps.worlds import services as worlds
from tests.connections.helpers import open_channels

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs/coming-from.md"
WORLD_JSON = ROOT / "tests/worlds/world-config-example.json"
PASSWORD = "lantern-orbit-73"


def guide_commands() -> list[str]:
    """The Stagehand commands of the guide's tables, in the order shown."""
    commands = []
    for line in GUIDE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not line.startswith("|"):
            continue
        commands += re.findall(r"`manage\.py ([^`]+)`", cells[1])
    return commands


# Run in this process, in this order, on one database (each sees what the last did).
IN_PROCESS = [
    "createsuperuser --noinput --username ops --email ops@example.org",
    "create_world",
    "import_config world.json --dry-run",
    "import_config world.json",
    "clone_world harborconf",
    "generate_token harborconf --trait moderator --trait speaker --days 90",
    "list_worlds",
    "list_worlds --json",
    "purge_user --world harborconf --uid cleo --dry-run",
    "jobs scheduled",
    "info",
    "check_integrity",
    "create_user --email ada@example.org --password-stdin",
    "set_admin ada@example.org",
    "jobs list",
    "jobs run log-test",
    "jobs run log-test message=hello",
    'jobs schedule "0 * * * *" log-test',
    "jobs unschedule log-test",
    "search index",
    "search index rooms attendees",
    "search index --reindex",
    "search index -f 2022-02-20T20:02:00Z",
    "cache flush",
    "delete_world harborconf --dry-run",
    "delete_world harborconf",
    "purge --dry-run",
    "purge --worlds",
    "purge --rooms",
    "purge --users",
    "purge",
]
# What a command reads from standard input, as an operator would type or pipe it.
STDIN = {
    "create_world": "harbor2027\nHarbor 2027\nevents.example.org\n",
    "clone_world harborconf": "harborcopy\nHarbor copy\ncopy.example.org\n",
    "create_user --email ada@example.org --password-stdin": PASSWORD + "\n",
}
# Not call_command's to run: a child process on a fresh SQLite database.
CHILD = ["migrate_safely", "showmigrations", "help", "help create_user", "shell_plus"]
# A shared channel layer (Redis), with live connections under the label 411b261.production.
WITH_REDIS = [
    "connections list",
    "connections drop '411b261.*'",
    "connections drop --interval-ms 50 '411b261.*'",
    "connections force_reload '411b261.*'",
    "connections force_reload --interval-ms 50 '411b261.*'",
]
# A Redis broker; `worker start` is the celery_worker fixture (tests/conftest.py).
WITH_BROKER = [
    "jobs run -d log-test",
    "worker status",
    "worker status --munin -q celery",
    "worker status --munin-config -q celery",
    "worker start",
]


def test_the_guide_shows_commands():
    # Guards the parser: if it stopped matching, the next test would pass vacuously.
    commands = guide_commands()
    assert len(commands) > 40
    assert "jobs run -d log-test" in commands
    assert "connections drop --interval-ms 50 '411b261.*'" in commands


def test_every_command_of_the_guide_is_run():
    runs = IN_PROCESS + CHILD + WITH_REDIS + WITH_BROKER
    assert len(runs) == len(set(runs))
    assert sorted(set(guide_commands())) == sorted(runs)


def test_the_guide_is_linked_from_the_readme():
    assert "(docs/coming-from.md)" in (ROOT / "README.md").read_text()


@pytest.mark.django_db(transaction=True)
def test_the_commands_run_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)
    config = json.loads(WORLD_JSON.read_text())
    config["world"]["domain"] = "harbor.example.org"  # as the guide says
    (tmp_path / "world.json").write_text(json.dumps(config))
    outputs: dict[str, str] = {}
    for command in IN_PROCESS:
        if command.startswith("purge_user"):
            attendee_cleo()
        out = StringIO()
        kwargs = {"stdout": out, "stderr": out}
        if command in STDIN:
            kwargs["stdin"] = StringIO(STDIN[command])
        call_command(*shlex.split(command), **kwargs)
        outputs[command] = out.getvalue()
    assert "World 'harborconf' created." in outputs["import_config world.json"]
    assert "harborcopy" in outputs["list_worlds"]
    assert outputs[
        "generate_token harborconf --trait moderator --trait speaker --days 90"
    ]
    assert json.loads(outputs["list_worlds --json"])
    assert "Dry run" in outputs["purge --dry-run"]


def attendee_cleo() -> None:
    world = worlds.get_world("harborconf")
    worlds.get_or_create_attendee(world, {"uid": "cleo", "traits": []})


def test_the_commands_run_in_a_child(base_env, tmp_path):
    env = {
        **base_env,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "STAGEHAND_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    for name in ("REDIS_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)
    for command in CHILD:
        done = subprocess.run(
            [sys.executable, "manage.py", *shlex.split(command)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,  # the shell reads end of input and ends
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr, done.stderr


@pytest.fixture
def live_label():
    registry = get_registry()
    registry.clear()
    yield lambda n: open_channels(registry, {"411b261.production": n})
    registry.clear()


@pytest.mark.redis
def test_the_connections_commands_run_with_redis(live_label):
    for command in WITH_REDIS:
        live_label(2)  # a drop closes them: fresh ones for every command
        out = StringIO()
        call_command(*shlex.split(command), stdout=out, stderr=out)
        assert "411b261.production" in out.getvalue(), command


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_the_worker_commands_run_on_a_broker(broker_env, celery_worker):
    assert celery_worker.poll() is None  # `worker start`, still running
    for command in WITH_BROKER[:-1]:
        done = subprocess.run(
            [sys.executable, "manage.py", *shlex.split(command)],
            cwd=ROOT,
            env=broker_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    assert celery_worker.args[1:4] == ["manage.py", "worker", "start"]
