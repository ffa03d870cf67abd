"""Backup names never collide, and a backup is visible only once it is complete."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
import time

import pytest
from django.core.management import CommandError

from apps.backups import services
from tests.conftest import database_url
from tests.helpers import printed

from .conftest import (
    SQLITE_ALIAS,
    bucket_keys,
    files_under,
    sqlite_execute,
    sqlite_rows,
)

# Each child sets Django up first, then waits for the same instant: the three
# `backup` commands start within milliseconds, inside one second.
AT_ONCE = """
import sys, time
import django
django.setup()
from django.core.management import call_command
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
call_command("backup")
"""


def backup_process(env: dict, start_at: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", AT_ONCE, str(start_at)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.postgres
@pytest.mark.django_db
def test_concurrent_backup_processes_all_succeed_with_different_names(base_env, s3):
    env = {
        **base_env,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url(),
        "AWS_STORAGE_BUCKET_NAME": s3.bucket,
        "AWS_S3_ENDPOINT_URL": s3.endpoint,
        "AWS_S3_REGION_NAME": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    s3.client.create_bucket(Bucket=s3.bucket)
    start_at = int(time.time()) + 6.2  # time enough for Django to start, mid-second
    children = [backup_process(env, start_at) for _ in range(3)]
    results = [(child.wait(timeout=120), *child.communicate()) for child in children]
    for returncode, out, err in results:
        assert returncode == 0, out + err
    names = [out.split(" to ", 1)[1].split(" ", 1)[0] for _, out, _ in results]
    assert len(set(names)) == 3, names
    assert bucket_keys(s3) == sorted(
        f"backup/{name}{suffix}" for name in names for suffix in ("", ".json")
    )
    for name in names:
        metadata = json.loads(
            s3.client.get_object(Bucket=s3.bucket, Key=f"backup/{name}.json")[
                "Body"
            ].read()
        )
        assert metadata["name"] == name


def name_of(output: str) -> str:
    return output.split(" to ", 1)[1].split(" ", 1)[0]


def test_backups_in_the_same_second_get_different_names(sqlite_db, backup_root):
    names: list[str] = []
    barrier = threading.Barrier(4)

    def take() -> None:
        barrier.wait()
        names.append(services.backup(SQLITE_ALIAS).name)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(names)) == 4
    assert all(services.NAME_RE.match(n)["tag"] for n in names)
    listed = services.list_backups()
    assert sorted(b.name for b in listed) == sorted(names)
    assert {b.state for b in listed} == {"complete"}
    # Only the final files: no temporary file is left behind.
    assert files_under(backup_root) == sorted(
        f"backup/{n}{suffix}" for n in names for suffix in ("", ".json")
    )


def test_old_style_names_still_list_and_restore(sqlite_db, backup_root):
    before = sqlite_rows(sqlite_db)
    new = name_of(printed("backup", "--database", SQLITE_ALIAS)[0])
    old = "sqlite-backup-20240101020000.sqlite3.gz"  # as taken before this change
    folder = backup_root / "backup"
    (folder / new).rename(folder / old)
    (folder / f"{new}.json").rename(folder / f"{old}.json")
    listed = json.loads(printed("backups", "--json")[0])
    assert [(b["name"], b["state"]) for b in listed] == [(old, "complete")]
    assert listed[0]["created"] == "2024-01-01T02:00:00Z"
    sqlite_execute(sqlite_db, "DELETE FROM note")
    printed("restore", old, "--database", SQLITE_ALIAS, "--noinput")
    assert sqlite_rows(sqlite_db) == before
    sqlite_execute(sqlite_db, "DELETE FROM note")
    printed("restore", "latest", "--database", SQLITE_ALIAS, "--noinput")
    assert sqlite_rows(sqlite_db) == before


def put(s3, name: str, body: bytes) -> None:
    s3.client.put_object(Bucket=s3.bucket, Key=f"site-a/backup/{name}", Body=body)


def stamp(ago: dt.timedelta) -> str:
    return (dt.datetime.now(dt.UTC) - ago).strftime("%Y%m%d%H%M%S")


def test_a_dump_without_metadata_is_incomplete_never_latest_and_pruned_after_a_day(
    sqlite_db, s3
):
    before = sqlite_rows(sqlite_db)
    good = name_of(printed("backup", "--database", SQLITE_ALIAS)[0])
    # Orphans an older version left when S3 went away before the metadata: one
    # from just now (newer than the good one), one from two days ago.
    young = f"sqlite-backup-{stamp(dt.timedelta(0))}-999999-aaaaaa.sqlite3.gz"
    stale = f"sqlite-backup-{stamp(dt.timedelta(days=2))}.sqlite3.gz"
    put(s3, young, b"half a dump")
    put(s3, stale, b"half a dump")

    table, _ = printed("backups")
    assert f"{young} is incomplete: it has no metadata file." in table
    assert f"{stale} is incomplete: it has no metadata file." in table
    assert table.splitlines()[-1] == "3 backups, 2 not restorable."
    listed = json.loads(printed("backups", "--json")[0])
    assert [(b["name"], b["state"]) for b in listed] == [
        (young, "incomplete"),
        (good, "complete"),
        (stale, "incomplete"),
    ]

    sqlite_execute(sqlite_db, "DELETE FROM note")
    out, err = printed("restore", "latest", "--database", SQLITE_ALIAS, "--noinput")
    assert f"Skipped {young}: it is incomplete (it has no metadata file)" in err
    assert f"Restored {SQLITE_ALIAS} from {good}." in out
    assert sqlite_rows(sqlite_db) == before

    out, _ = printed("prune_backups", "--keep", "5", "--dry-run")
    rows = {line.split()[0]: line for line in out.splitlines()[1:-1]}
    assert "keep" in rows[young] and "incomplete for less than a day" in rows[young]
    assert "would delete" in rows[stale]
    assert "incomplete for more than a day" in rows[stale]
    assert "the newest complete backup" in rows[good]
    assert len(bucket_keys(s3)) == 4
    out, _ = printed("prune_backups", "--keep", "5")
    assert out.splitlines()[-1].startswith("Deleted 1 backup")
    assert bucket_keys(s3) == sorted(
        [
            f"site-a/backup/{young}",
            f"site-a/backup/{good}",
            f"site-a/backup/{good}.json",
        ]
    )


def test_s3_failing_right_after_the_dump_publishes_nothing(sqlite_db, faulty_s3):
    s3 = faulty_s3
    good = services.backup(SQLITE_ALIAS).name
    s3.proxy.fails = lambda method, path: method == "PUT" and path.endswith(".json")
    with pytest.raises(CommandError, match="metadata failed.*not published") as exc:
        printed("backup", "--database", SQLITE_ALIAS)
    assert s3.proxy.endpoint in str(exc.value)
    assert "cleaning up failed" not in str(exc.value)
    assert bucket_keys(s3) == [f"site-a/backup/{good}", f"site-a/backup/{good}.json"]
    assert s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads") is None

    # The abort fails too: said so, and still nothing is listed.
    s3.proxy.fails = lambda method, path: (
        (method == "PUT" and path.endswith(".json"))
        or (method == "DELETE" and "uploadId=" in path)
    )
    with pytest.raises(CommandError, match="metadata failed") as exc:
        printed("backup", "--database", SQLITE_ALIAS)
    assert "cleaning up failed too" in str(exc.value)
    assert "AbortIncompleteMultipartUpload" in str(exc.value)
    assert [b.name for b in services.list_backups()] == [good]
    assert services.resolve("latest").name == good

    # Publishing fails after the metadata: the metadata is removed again.
    s3.proxy.fails = lambda method, path: method == "POST" and "uploadId=" in path
    with pytest.raises(CommandError, match="publishing the backup failed"):
        printed("backup", "--database", SQLITE_ALIAS)
    assert [b.name for b in services.list_backups()] == [good]
    assert bucket_keys(s3) == [f"site-a/backup/{good}", f"site-a/backup/{good}.json"]


def test_a_failed_cleanup_is_reported_as_failed(sqlite_db, faulty_s3):
    s3 = faulty_s3
    names = [services.backup(SQLITE_ALIAS).name for _ in range(3)]
    s3.proxy.fails = lambda method, path: method == "DELETE"
    with pytest.raises(CommandError, match="Pruning failed: deleting .* failed") as exc:
        printed("prune_backups", "--keep", "1")
    assert "deleted 0 of 2" in str(exc.value)
    assert s3.proxy.failed
    assert len(bucket_keys(s3)) == 6
    assert sorted(b.name for b in services.list_backups()) == sorted(names)


@pytest.mark.parametrize(
    "metadata",
    [
        b"",
        b"\x00\xff not json",
        b'"\\ud800"',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"pad": "' + b"x" * (services.MAX_METADATA_SIZE + 1) + b'"}',
        b'{"engine": "sqlite", "size": 9223372036854775808, "sha256": "0"}',
    ],
    ids=["empty", "nul", "surrogate", "deep", "huge", "2^63"],
)
def test_hostile_metadata_makes_a_backup_not_restorable_never_a_traceback(
    sqlite_db, backup_root, metadata
):
    good = services.backup(SQLITE_ALIAS).name
    bad = f"sqlite-backup-{stamp(dt.timedelta(0))}-999999-bbbbbb.sqlite3.gz"
    folder = backup_root / "backup"
    (folder / bad).write_bytes(b"x")
    (folder / f"{bad}.json").write_bytes(metadata)
    listed = {b.name: b.state for b in services.list_backups()}
    assert listed[good] == "complete" and listed[bad] in {"incomplete", "damaged"}
    assert services.resolve("latest").name == good
    with pytest.raises(CommandError, match=bad):
        printed("restore", bad, "--database", SQLITE_ALIAS, "--noinput")


def test_metadata_left_without_its_dump_is_never_listed_and_pruned_after_a_day(
    sqlite_db, backup_root
):
    good = services.backup(SQLITE_ALIAS).name
    folder = backup_root / "backup"
    # A publication that failed and whose metadata could not be removed either.
    stale = f"sqlite-backup-{stamp(dt.timedelta(days=2))}-000001-cccccc.sqlite3.gz"
    young = f"sqlite-backup-{stamp(dt.timedelta(hours=1))}-000001-dddddd.sqlite3.gz"
    for name in (stale, young):
        (folder / f"{name}.json").write_text("{}")
    assert [b.name for b in services.list_backups()] == [good]
    out, _ = printed("prune_backups", "--keep", "1", "--dry-run")
    assert f"{stale}.json" in out and "only its metadata file is left" in out
    printed("prune_backups", "--keep", "1")
    assert files_under(backup_root) == sorted(
        [f"backup/{good}", f"backup/{good}.json", f"backup/{young}.json"]
    )
