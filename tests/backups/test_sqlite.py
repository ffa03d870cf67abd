"""backup / restore of a SQLite database file: online backup API, integrity check,
atomic rename, and every fault leaving the live file as it was."""

from __future__ import annotations

import gzip
import json
import logging
import sqlite3
import threading
from io import StringIO

import pytest
from django.core.management import CommandError

from apps.backups import services
from apps.jobs.registry import get_job
from tests.helpers import call, documented, embedded_env, manage, run_json

from .conftest import (
    SQLITE_ALIAS,
    add_database,
    files_under,
    remove_database,
    sqlite_execute,
    sqlite_rows,
    write_consistent_backup,
)


def take_backup(*extra: str) -> str:
    output = call("backup", "--database", SQLITE_ALIAS, *extra)
    return output.split(" to ", 1)[1].split(" ", 1)[0]


def test_round_trip_restores_the_snapshot_row_for_row(sqlite_db, backup_root, caplog):
    snapshot = sqlite_rows(sqlite_db)
    name = take_backup()
    assert name.startswith("sqlite-backup-") and name.endswith(".sqlite3.gz")
    assert files_under(backup_root) == [f"backup/{name}", f"backup/{name}.json"]
    metadata = json.loads((backup_root / "backup" / f"{name}.json").read_text())
    assert metadata["engine"] == "sqlite"
    assert metadata["size"] == (backup_root / "backup" / name).stat().st_size
    assert len(metadata["sha256"]) == 64

    sqlite_execute(sqlite_db, "DELETE FROM note WHERE body = 'two'")
    sqlite_execute(sqlite_db, "UPDATE note SET body = 'changed' WHERE id = 1")
    sqlite_execute(sqlite_db, "INSERT INTO note (body) VALUES ('four')")
    assert sqlite_rows(sqlite_db) != snapshot

    with caplog.at_level(logging.INFO, logger="apps.backups.services"):
        output = call("restore", "latest", "--database", SQLITE_ALIAS, "--noinput")
    assert sqlite_rows(sqlite_db) == snapshot
    assert f"Restored {SQLITE_ALIAS} from {name}." in output
    # The database that was live before is kept beside it, unchanged.
    kept = [p for p in sqlite_db.parent.iterdir() if "-before-" in p.name]
    assert len(kept) == 1 and str(kept[0]) in output
    # In the log too: a restore from the API may outlive its request.
    assert [r.getMessage() for r in caplog.records] == [
        f"Restoring database {SQLITE_ALIAS} from {name}.",
        f"Restored database {SQLITE_ALIAS} from {name}; the previous one is kept "
        f"as {kept[0]}.",
    ]
    assert ("four",) in [(r[1],) for r in sqlite_rows(kept[0])]
    assert not [p for p in sqlite_db.parent.iterdir() if ".restore-" in p.name]


def test_uncompressed_backup_round_trips(sqlite_db):
    snapshot = sqlite_rows(sqlite_db)
    name = take_backup("--no-compress")
    assert name.endswith(".sqlite3")
    sqlite_execute(sqlite_db, "DELETE FROM note")
    call("restore", name, "--database", SQLITE_ALIAS, "--noinput")
    assert sqlite_rows(sqlite_db) == snapshot


def test_backup_taken_while_writes_continue_restores_consistently(sqlite_db):
    sqlite_execute(sqlite_db, "CREATE TABLE pair (id INTEGER PRIMARY KEY, grp INT)")
    stop = threading.Event()
    written = []

    def writer() -> None:
        conn = sqlite3.connect(sqlite_db, timeout=20)
        group = 0
        while not stop.is_set() and group < 100_000:
            group += 1
            with conn:  # both rows of a group commit together, or neither
                conn.execute("INSERT INTO pair (grp) VALUES (?)", (group,))
                conn.execute("INSERT INTO pair (grp) VALUES (?)", (group,))
            written.append(group)
        conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 50:
            stop.wait(0.01)
        name = take_backup()
        during = len(written)
        while len(written) < during + 50:
            stop.wait(0.01)
    finally:
        stop.set()
        thread.join()

    call("restore", name, "--database", SQLITE_ALIAS, "--noinput")
    counts = dict(
        sqlite3.connect(sqlite_db)
        .execute("SELECT grp, count(*) FROM pair GROUP BY grp")
        .fetchall()
    )
    assert counts, "the backup caught none of the writes"
    assert set(counts.values()) == {2}
    assert sorted(counts) == list(range(1, len(counts) + 1))
    assert len(counts) < len(written)  # writes went on after the backup


def test_listing_is_newest_first_and_json(sqlite_db, backup_root):
    first = take_backup()
    (backup_root / "backup" / "notes.txt").write_text("not a backup")
    older = "sqlite-backup-20000101000000.sqlite3.gz"
    (backup_root / "backup" / older).write_bytes(b"x")
    table = call("backups")
    lines = table.splitlines()
    # The State column is new: a dump without metadata (older) is incomplete.
    # Verified says whether a rehearsal restored it (none has yet).
    assert lines[0].split() == [
        "Name",
        "Engine",
        "Size",
        "Age",
        "Created",
        "Verified",
        "State",
    ]
    assert lines[1].split()[-3:-1] == ["not", "yet"]
    assert lines[1].startswith(first) and lines[2].startswith(older)
    assert lines[1].split()[-1] == "ok" and lines[2].split()[-1] == "incomplete"
    assert f"{older} is incomplete: it has no metadata file." in table
    assert table.splitlines()[-1] == "2 backups, 1 not restorable."
    assert "notes.txt" not in table
    data = json.loads(call("backups", "--json"))
    assert [d["name"] for d in data] == [first, older]
    assert data[0]["engine"] == "sqlite" and data[0]["size"] > 0
    assert [d["state"] for d in data] == ["complete", "incomplete"]


def test_listing_an_empty_storage(backup_root):
    assert json.loads(call("backups", "--json")) == []
    assert "0 backups." in call("backups")


def test_prune_keeps_the_newest(sqlite_db, backup_root):
    names = [f"sqlite-backup-2020010100000{i}.sqlite3.gz" for i in range(4)]
    folder = backup_root / "backup"
    for name in names:
        write_consistent_backup(folder, name, b"x")
    output = call("prune_backups", "--keep", "2", "--dry-run")
    assert "Would delete 2 backups" in output
    assert len(files_under(backup_root)) == 8
    output = call("prune_backups", "--keep", "2")
    assert "Deleted 2 backups" in output
    assert files_under(backup_root) == sorted(
        f"backup/{n}{suffix}" for n in names[2:] for suffix in ("", ".json")
    )
    with pytest.raises(CommandError, match="at least 1"):
        call("prune_backups", "--keep", "0")


def test_backup_job_applies_backup_keep(sqlite_db, backup_root, settings):
    folder = backup_root / "backup"
    for i in range(3):
        name = f"sqlite-backup-2020010100000{i}.sqlite3.gz"
        write_consistent_backup(folder, name, b"x")
    settings.BACKUP_KEEP = 2
    # The job now also verifies the new backup (a recorded run of its own); that
    # part is tested in test_rehearsal.py.
    settings.BACKUP_VERIFY = False
    job = get_job("backup")
    summary = job.func(database=SQLITE_ALIAS)
    assert "pruned 2" in summary
    names = [b.name for b in services.list_backups()]
    assert len(names) == 2 and names[1] == "sqlite-backup-20200101000002.sqlite3.gz"
    assert names[0] in summary


# Faults: each leaves the live database exactly as it was ---------------------------


def live_bytes(path) -> bytes:
    return path.read_bytes()


def test_truncated_backup_is_refused(sqlite_db, backup_root):
    name = take_backup()
    dump = backup_root / "backup" / name
    dump.write_bytes(dump.read_bytes()[:-10])
    before = live_bytes(sqlite_db)
    with pytest.raises(CommandError, match="truncated"):
        call("restore", name, "--database", SQLITE_ALIAS, "--noinput")
    assert live_bytes(sqlite_db) == before
    assert sorted(p.name for p in sqlite_db.parent.iterdir()) == [
        "backups",
        "live.sqlite3",
    ]


def test_wrong_checksum_is_refused(sqlite_db, backup_root):
    name = take_backup("--no-compress")
    dump = backup_root / "backup" / name
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    before = live_bytes(sqlite_db)
    with pytest.raises(CommandError, match="checksum"):
        call("restore", name, "--database", SQLITE_ALIAS, "--noinput")
    with pytest.raises(CommandError, match="checksum"):
        call("restore", name, "--database", SQLITE_ALIAS, "--dry-run")
    assert live_bytes(sqlite_db) == before
    assert sorted(p.name for p in sqlite_db.parent.iterdir()) == [
        "backups",
        "live.sqlite3",
    ]


def test_wrong_engine_is_refused(sqlite_db, backup_root):
    name = "postgresql-backup-20240101000000.dump"
    folder = backup_root / "backup"
    folder.mkdir(parents=True)
    (folder / name).write_bytes(b"PGDMP")
    (folder / f"{name}.json").write_text(
        json.dumps({"engine": "postgresql", "size": 5, "sha256": "0" * 64})
    )
    before = live_bytes(sqlite_db)
    with pytest.raises(CommandError, match="postgresql backup.*sqlite"):
        call("restore", name, "--database", SQLITE_ALIAS, "--noinput")
    assert live_bytes(sqlite_db) == before


def test_missing_backup_and_missing_metadata_are_refused(sqlite_db, backup_root):
    with pytest.raises(CommandError, match="no backups yet"):
        call("restore", "latest", "--database", SQLITE_ALIAS, "--noinput")
    with pytest.raises(CommandError, match="there is no backup"):
        call(
            "restore",
            "sqlite-backup-20000101000000.sqlite3.gz",
            "--database",
            SQLITE_ALIAS,
            "--noinput",
        )
    name = take_backup()
    (backup_root / "backup" / f"{name}.json").unlink()
    before = live_bytes(sqlite_db)
    with pytest.raises(CommandError, match="no readable metadata"):
        call("restore", name, "--database", SQLITE_ALIAS, "--noinput")
    assert live_bytes(sqlite_db) == before


def test_restore_failing_half_way_leaves_the_live_file(sqlite_db, backup_root, caplog):
    before = live_bytes(sqlite_db)
    # Valid gzip, checksum right, but the content is not a SQLite database.
    write_consistent_backup(
        backup_root / "backup",
        "sqlite-backup-20240101000000.sqlite3.gz",
        gzip.compress(b"definitely not a database" * 1000),
    )
    with pytest.raises(CommandError, match="integrity check"):
        call("restore", "latest", "--database", SQLITE_ALIAS, "--noinput")
    failed = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failed) == 1
    assert (
        failed[0]
        .getMessage()
        .startswith(
            f"Restoring database {SQLITE_ALIAS} from sqlite-backup-20240101000000"
            ".sqlite3.gz failed: "
        )
    )
    # A gzip stream cut off in the middle: decompression fails half-way.
    good = gzip.compress(sqlite_db.read_bytes())
    write_consistent_backup(
        backup_root / "backup",
        "sqlite-backup-20240101000001.sqlite3.gz",
        good[: len(good) // 2] + b"\x00" * 64 + good[len(good) // 2 :],
    )
    with pytest.raises(CommandError, match="Restore failed"):
        call("restore", "latest", "--database", SQLITE_ALIAS, "--noinput")
    assert live_bytes(sqlite_db) == before
    assert sorted(p.name for p in sqlite_db.parent.iterdir()) == [
        "backups",
        "live.sqlite3",
    ]


def test_restore_asks_first(sqlite_db, monkeypatch):
    take_backup()
    before = live_bytes(sqlite_db)
    sqlite_execute(sqlite_db, "DELETE FROM note")
    changed = live_bytes(sqlite_db)
    assert changed != before
    monkeypatch.setattr("sys.stdin", StringIO("no\n"))
    with pytest.raises(CommandError, match="cancelled"):
        call("restore", "--database", SQLITE_ALIAS)
    assert live_bytes(sqlite_db) == changed
    monkeypatch.setattr("sys.stdin", StringIO("yes\n"))
    call("restore", "--database", SQLITE_ALIAS)
    assert len(sqlite_rows(sqlite_db)) == 3


def test_in_memory_database_is_refused(backup_root):
    add_database(
        "backup_memory", {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    )
    try:
        with pytest.raises(CommandError, match="in memory"):
            call("backup", "--database", "backup_memory")
    finally:
        remove_database("backup_memory")
    assert files_under(backup_root) == []


def test_unknown_database_alias_is_refused():
    with pytest.raises(CommandError, match="there is no database 'nope'"):
        call("backup", "--database", "nope")


def test_verify_rehearses_a_sqlite_backup_and_compares_row_counts(
    sqlite_db, backup_root
):
    name = take_backup()
    metadata = json.loads((backup_root / "backup" / f"{name}.json").read_text())
    assert metadata["rows"] == {"note": 3}
    output = call("restore", "--verify", name, "--database", SQLITE_ALIAS)
    assert "Integrity checks: not run: no Stagehand schema in the backup." in output
    assert "Rows: 3 rows in 1 table; all as counted at dump time." in output
    assert json.loads(call("backups", "--json"))[0]["verified"] == "ok"
    # The scratch copy beside the live file is gone.
    assert sorted(p.name for p in sqlite_db.parent.iterdir()) == [
        "backups",
        "live.sqlite3",
    ]

    metadata["rows"] = {"note": 2}
    (backup_root / "backup" / f"{name}.json").write_text(json.dumps(metadata))
    with pytest.raises(CommandError, match=r"row counts differ.*note 3 \(dumped 2\)"):
        call("restore", name, "--dry-run", "--database", SQLITE_ALIAS)
    entry = json.loads(call("backups", "--json"))[0]
    assert entry["verified"] == "failed" and "note 3" in entry["verify_problem"]


def test_restore_json_for_scripts(sqlite_db, backup_root):
    snapshot = sqlite_rows(sqlite_db)
    name = take_backup()
    with pytest.raises(CommandError, match="add --noinput"):
        call("restore", "latest", "--database", SQLITE_ALIAS, "--json")

    verified, _ = run_json(
        "restore", "--verify", name, "--database", SQLITE_ALIAS, "--json"
    )
    assert verified["name"] == name and verified["ok"] is True
    dry, _ = run_json("restore", "--dry-run", "--database", SQLITE_ALIAS, "--json")
    assert dry["dry_run"] is True and dry["backup"]["name"] == name
    assert dry["rehearsal"]["ok"] is True

    sqlite_execute(sqlite_db, "DELETE FROM note")
    args = documented("docs/backup-restore.md", "restore latest --noinput --json")
    done, _ = run_json(*args, "--database", SQLITE_ALIAS)
    assert sqlite_rows(sqlite_db) == snapshot
    assert done["dry_run"] is False and done["backup"]["name"] == name
    assert done["previous"] and done["interrupted"] == 0


@pytest.mark.django_db
def test_jobs_run_verify_backup_rehearses_the_newest_backup(sqlite_db, backup_root):
    name = take_backup()
    output = call("jobs", "run", "verify-backup", f"database={SQLITE_ALIAS}")
    assert f"{name} restores: 3 rows in 1 table as dumped" in output
    assert json.loads(call("backups", "--json"))[0]["verified"] == "ok"


def test_a_failing_system_check_does_not_stand_in_the_way_of_a_restore(tmp_path):
    """The backup commands run no system checks: a setting that fails one (here
    LOG_FORMAT, ops.E002) stops `check` and the web's commands, not a backup or a
    restore, run as an operator runs them."""
    env = embedded_env(tmp_path)
    manage(env, "migrate", "--noinput", timeout=300, check=True)
    broken = {**env, "LOG_FORMAT": "yaml"}
    refused = manage(broken, "check")
    assert refused.returncode != 0 and "ops.E002" in refused.stderr
    backed_up = manage(broken, "backup", check=True)
    name = backed_up.stdout.split(" to ", 1)[1].split(" ", 1)[0]
    assert name in manage(broken, "backups", check=True).stdout
    restored = manage(broken, "restore", name, "--noinput", check=True)
    assert f"Restored default from {name}." in restored.stdout
    manage(broken, "prune_backups", "--keep", "5", "--dry-run", check=True)
