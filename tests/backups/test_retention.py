"""prune_backups and BACKUP_KEEP: only backups known to restore count, and the newest
verified backup is never deleted."""

from __future__ import annotations

import json

import pytest

from tests.helpers import call

from .conftest import SQLITE_ALIAS, files_under, write_consistent_backup

NAMES = [f"sqlite-backup-2020010100000{i}.sqlite3.gz" for i in range(5)]


def verified(folder, name: str, ok: bool, reason: str = "") -> None:
    (folder / f"{name}.verified.json").write_text(
        json.dumps(
            {"ok": ok, "reason": reason, "verified_at": "2020-01-02T00:00:00+00:00"}
        )
    )


@pytest.fixture
def mixed(backup_root):
    """Oldest to newest: verified, never verified, verified, failed, not yet."""
    folder = backup_root / "backup"
    for name in NAMES:
        write_consistent_backup(folder, name, b"x" * 10)
    verified(folder, NAMES[0], True)
    verified(folder, NAMES[2], True)
    verified(folder, NAMES[3], False, "pg_restore failed (exit 1)")
    return folder


def decisions(*args: str) -> dict[str, dict]:
    data = json.loads(call("prune_backups", *args, "--json"))
    return {d["name"]: d for d in data["decisions"]}


def test_only_verified_and_newer_unverified_backups_count(mixed):
    got = decisions("--keep", "2", "--dry-run")
    assert [got[n]["action"] for n in NAMES] == [
        "delete",  # verified, but the third that counts
        "delete",  # never verified and older than the newest verified
        "keep",  # the newest verified
        "keep",  # failed, newer than the newest 2 that count: kept to be looked at
        "keep",  # not verified yet, newer than the newest verified: counts
    ]
    assert [got[n]["counted"] for n in NAMES] == [True, False, True, False, True]
    assert got[NAMES[2]]["reason"] == "the newest verified backup"
    assert "failed its verification, newer than" in got[NAMES[3]]["reason"]
    assert "pg_restore failed" in got[NAMES[3]]["reason"]
    assert "not verified and older than the newest verified" in got[NAMES[1]]["reason"]
    assert len(files_under(mixed.parent)) == 13  # a dry run deletes nothing


def test_the_newest_verified_backup_is_never_deleted(mixed):
    output = call("prune_backups", "--keep", "1", "--dry-run")
    rows = {line.split()[0]: line for line in output.splitlines()[1:-1]}
    assert "keep" in rows[NAMES[4]] and "the newest complete backup" in rows[NAMES[4]]
    assert "keep" in rows[NAMES[2]] and "the newest verified backup" in rows[NAMES[2]]
    assert rows[NAMES[2]].split()[4] == "ok"  # the Verified column
    for name in (NAMES[0], NAMES[1], NAMES[3]):
        assert "would delete" in rows[name]

    data = json.loads(call("prune_backups", "--keep", "1", "--json"))
    assert data["dry_run"] is False
    assert sorted(data["deleted"]) == sorted([NAMES[0], NAMES[1], NAMES[3]])
    assert files_under(mixed.parent) == [
        f"backup/{NAMES[2]}",
        f"backup/{NAMES[2]}.json",
        f"backup/{NAMES[2]}.verified.json",
        f"backup/{NAMES[4]}",
        f"backup/{NAMES[4]}.json",
    ]


def test_failed_newest_backups_do_not_push_good_ones_out(backup_root):
    folder = backup_root / "backup"
    for name in NAMES:
        write_consistent_backup(folder, name, b"x")
    verified(folder, NAMES[0], True)
    verified(folder, NAMES[1], True)
    for name in NAMES[2:]:
        verified(folder, name, False, "row counts differ")
    got = decisions("--keep", "2")
    assert [got[n]["action"] for n in NAMES] == ["keep"] * 5
    assert files_under(backup_root) != []


def test_backup_json_names_the_new_backup(sqlite_db, backup_root):
    data = json.loads(call("backup", "--database", SQLITE_ALIAS, "--json"))
    assert data["name"].startswith("sqlite-backup-") and data["size"] > 0
    assert data["verified"] == "not yet" and data["duration"] >= 0
    assert f"backup/{data['name']}" in files_under(backup_root)
