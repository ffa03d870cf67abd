"""Fixtures for the backup tests: a private backup folder, a SQLite database file
under its own alias, PostgreSQL helpers and an S3 server (moto) on loopback."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from django.db import connections

SQLITE_ALIAS = "backup_sqlite"


@pytest.fixture(autouse=True)
def backup_root(tmp_path, settings) -> Path:
    """Every backup test writes into its own folder, never into var/."""
    root = tmp_path / "backups"
    settings.STORAGES = {
        **settings.STORAGES,
        "backups": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(root)},
        },
    }
    return root


def files_under(root: Path) -> list[str]:
    """Every file below ``root``, hidden temporary files included."""
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def write_consistent_backup(folder: Path, name: str, payload: bytes, **extra) -> None:
    """A backup whose metadata matches its bytes, whatever those bytes are."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(payload)
    (folder / f"{name}.json").write_text(
        json.dumps(
            {
                "engine": name.split("-", 1)[0],
                "size": len(payload),
                "sha256": hashlib.sha256(payload).hexdigest(),
                **extra,
            }
        )
    )


def add_database(alias: str, settings_dict: dict) -> None:
    connections.settings[alias] = connections.configure_settings(
        {"default": connections.settings["default"], alias: settings_dict}
    )[alias]


def remove_database(alias: str) -> None:
    if alias in connections.settings:
        connections[alias].close()
        del connections[alias]
        del connections.settings[alias]


@pytest.fixture
def sqlite_db(tmp_path):
    """A SQLite database file under the alias ``backup_sqlite``, with 3 notes."""
    path = tmp_path / "live.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE note (id INTEGER PRIMARY KEY, body TEXT)")
        conn.executemany(
            "INSERT INTO note (body) VALUES (?)", [("one",), ("two",), ("three",)]
        )
    conn.close()
    add_database(
        SQLITE_ALIAS, {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}
    )
    yield path
    remove_database(SQLITE_ALIAS)


def sqlite_rows(path: Path, table: str = "note") -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
    finally:
        conn.close()


def sqlite_execute(path: Path, sql: str, params=()) -> None:
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute(sql, params)
    finally:
        conn.close()


def start_moto(port: int = 0):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server


def stop_moto(server) -> None:
    server.stop()
    server._server.server_close()  # stop() leaves the socket listening


@pytest.fixture(scope="session")
def moto_server():
    """An S3-compatible server (moto) on loopback, spoken to over real HTTP."""
    server = start_moto()
    yield server
    stop_moto(server)


@pytest.fixture
def s3(moto_server, settings, backup_root):
    """Point the backup storage at a fresh bucket (not created yet) under ``site-a/``."""
    import uuid
    from types import SimpleNamespace

    import boto3

    host, port = moto_server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    bucket = f"stagehand-{uuid.uuid4().hex[:12]}"
    settings.AWS_ACCESS_KEY_ID = "testing"
    settings.AWS_SECRET_ACCESS_KEY = "testing"
    settings.AWS_S3_REGION_NAME = "us-east-1"
    settings.AWS_S3_ENDPOINT_URL = endpoint
    settings.AWS_STORAGE_BUCKET_NAME = bucket
    settings.STORAGES = {
        **settings.STORAGES,
        "backups": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {"location": "site-a", "file_overwrite": True},
        },
    }
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    yield SimpleNamespace(client=client, bucket=bucket, endpoint=endpoint)
    client.close()


def bucket_keys(s3) -> list[str]:
    from botocore.exceptions import ClientError

    try:
        pages = s3.client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", ()))
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NoSuchBucket":
            return []
        raise
