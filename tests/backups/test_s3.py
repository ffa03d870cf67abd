"""Backups in S3: moto's server on loopback, spoken to over real HTTP."""

from __future__ import annotations

import json
import socket

import pytest
from django.core.management import CommandError

from apps.backups import s3 as s3_storage
from apps.backups import services
from tests.helpers import call

from .conftest import (
    SQLITE_ALIAS,
    bucket_keys,
    sqlite_execute,
    sqlite_rows,
    start_moto,
    stop_moto,
)

MiB = 1024 * 1024


def point_at(settings, endpoint: str) -> None:
    settings.AWS_S3_ENDPOINT_URL = endpoint
    settings.STORAGES = dict(settings.STORAGES)  # storages are rebuilt on the next use


def grow(path, megabytes: int) -> None:
    """Add incompressible rows so the dump needs several multipart parts."""
    sqlite_execute(path, "CREATE TABLE blob (id INTEGER PRIMARY KEY, data BLOB)")
    for _ in range(megabytes):
        sqlite_execute(
            path,
            "INSERT INTO blob (data) SELECT randomblob(65536) FROM "
            "(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
            "WHERE i < 16) SELECT i FROM n)",
        )


def test_round_trip_through_s3_in_parts_under_a_location_prefix(
    sqlite_db, s3, monkeypatch
):
    monkeypatch.setattr(s3_storage, "PART_SIZE", 5 * MiB)  # S3's smallest part
    grow(sqlite_db, 12)
    before = sqlite_rows(sqlite_db)
    blobs = sqlite_rows(sqlite_db, "blob")
    assert bucket_keys(s3) == []  # the bucket does not exist yet

    output = call("backup", "--database", SQLITE_ALIAS)
    name = output.split(" to ", 1)[1].split(" ", 1)[0]
    assert bucket_keys(s3) == [f"site-a/backup/{name}", f"site-a/backup/{name}.json"]
    head = s3.client.head_object(Bucket=s3.bucket, Key=f"site-a/backup/{name}")
    assert head["ContentLength"] > 10 * MiB
    assert head["ETag"].strip('"').endswith("-3")  # uploaded as three parts
    metadata = json.loads(
        s3.client.get_object(Bucket=s3.bucket, Key=f"site-a/backup/{name}.json")[
            "Body"
        ].read()
    )
    assert metadata["size"] == head["ContentLength"]

    listed = json.loads(call("backups", "--json"))
    assert [b["name"] for b in listed] == [name]

    sqlite_execute(sqlite_db, "DELETE FROM note")
    sqlite_execute(sqlite_db, "DELETE FROM blob WHERE id % 2 = 0")
    call("restore", "latest", "--database", SQLITE_ALIAS, "--noinput")
    assert sqlite_rows(sqlite_db) == before
    assert sqlite_rows(sqlite_db, "blob") == blobs


def test_listing_a_bucket_that_does_not_exist_yet(s3):
    assert json.loads(call("backups", "--json")) == []


def test_s3_unreachable_fails_cleanly(sqlite_db, s3, settings, backup_root):
    with socket.socket() as sock:  # a port on which nothing listens
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    point_at(settings, f"http://127.0.0.1:{closed_port}")
    with pytest.raises(CommandError, match="storage is not reachable"):
        call("backup", "--database", SQLITE_ALIAS)
    assert bucket_keys(s3) == []


def test_s3_going_away_during_the_upload_leaves_no_backup(sqlite_db, s3, settings):
    server = start_moto()  # moto keeps its buckets per process: s3.client sees them
    host, port = server.get_host_and_port()
    point_at(settings, f"http://{host}:{port}")
    grow(sqlite_db, 12)
    stopped = []

    def cut_off(done: int) -> None:
        # The first part is on its way: take the server down under the upload.
        if done > s3_storage.PART_SIZE and not stopped:
            stop_moto(server)
            stopped.append(done)

    try:
        with pytest.raises(services.BackupError, match="writing the backup") as exc:
            services.backup(SQLITE_ALIAS, compress=False, progress=cut_off)
    finally:
        if not stopped:
            stop_moto(server)
    assert stopped
    # The upload could not even be aborted with the server gone, and says so.
    assert "cleaning up failed too" in str(exc.value)
    assert bucket_keys(s3) == []
    point_at(settings, s3.endpoint)
    assert services.list_backups() == []
