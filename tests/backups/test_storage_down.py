"""With the backup storage down, every command and `stats` say so in bounded time.

S3 down twice over: a closed port (refused at once) and a server that accepts and
never answers (only the timeouts end the wait).
"""

from __future__ import annotations

import json
import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from .conftest import SQLITE_ALIAS

# Two attempts of at most a second to connect and a second per read, per request:
# far below this, whatever the command does before it gives up.
BOUND = 20

COMMANDS = {
    "backups": ("backups",),
    "restore latest": ("restore", "latest", "--database", SQLITE_ALIAS, "--noinput"),
    "restore dry run": (
        "restore",
        "sqlite-backup-20240101020000.sqlite3.gz",
        "--database",
        SQLITE_ALIAS,
        "--dry-run",
    ),
    "prune_backups": ("prune_backups", "--keep", "1"),
    "backup": ("backup", "--database", SQLITE_ALIAS),
}


@pytest.fixture(params=["closed", "hanging"])
def s3_down(request, s3, settings, fast_s3_timeouts) -> str:
    endpoint = request.getfixturevalue(f"{request.param}_endpoint")
    settings.AWS_S3_ENDPOINT_URL = endpoint
    settings.STORAGES = dict(settings.STORAGES)  # storages are rebuilt on the next use
    return endpoint


@pytest.mark.parametrize("command", list(COMMANDS))
def test_each_command_names_the_storage_and_what_to_do(command, s3_down, s3, sqlite_db):
    started = time.monotonic()
    with pytest.raises(CommandError) as exc:
        call_command(*COMMANDS[command], stdout=StringIO(), stderr=StringIO())
    assert time.monotonic() - started < BOUND
    message = str(exc.value)
    assert "the backup storage is not reachable" in message
    assert f"s3://{s3.bucket}/site-a/backup/ at {s3_down}" in message
    assert "AWS_S3_ENDPOINT_URL" in message and "then " in message
    assert "Traceback" not in message


@pytest.mark.django_db
def test_stats_shows_the_storage_as_unavailable(s3_down, s3):
    out = StringIO()
    started = time.monotonic()
    with pytest.raises(CommandError, match="unavailable: .*storage") as exc:
        call_command("stats", "--json", stdout=out)
    assert time.monotonic() - started < BOUND
    assert exc.value.returncode == 2
    storage = {c["name"]: c for c in json.loads(out.getvalue())}["storage"]
    assert storage["status"] == "unavailable"
    assert s3_down in storage["detail"]


def test_a_backup_folder_that_cannot_be_read_is_a_clear_error(
    sqlite_db, backup_root, settings
):
    backup_root.parent.mkdir(parents=True, exist_ok=True)
    backup_root.write_text("a file where the backups folder should be")
    for command in ("backups", "backup"):
        args = (
            (command,)
            if command == "backups"
            else (command, "--database", SQLITE_ALIAS)
        )
        with pytest.raises(
            CommandError, match="the backup storage is not reachable"
        ) as exc:
            call_command(*args, stdout=StringIO())
        assert f"the folder {backup_root}/backup/" in str(exc.value)
        assert "may read and write it" in str(exc.value)
