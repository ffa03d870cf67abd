"""Fixtures for the backup tests: a private backup folder, a SQLite database file
under its own alias, PostgreSQL helpers and an S3 server (moto) on loopback."""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import socket
import sqlite3
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.exceptions import ClientError
from django.db import connections
from moto.server import ThreadedMotoServer

from apps.backups.engines import postgresql
from tests.helpers import call, close_s3_connections

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
    close_s3_connections()


def bucket_keys(s3) -> list[str]:
    try:
        pages = s3.client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", ()))
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NoSuchBucket":
            return []
        raise


class HangingServer:
    """Accepts TCP connections and never answers: an S3 endpoint that hangs."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)  # so that the thread sees ``stopped`` soon
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted.append(conn)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def hanging_endpoint():
    server = HangingServer()
    yield f"http://127.0.0.1:{server.port}"
    server.close()


@pytest.fixture
def closed_endpoint():
    with socket.socket() as sock:  # a port on which nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class FaultyProxy:
    """An HTTP proxy in front of moto that answers 503 to the requests ``fails`` picks.

    S3 going away for one kind of request (the metadata write, a delete) at the moment
    it matters, over real HTTP.
    """

    def __init__(self, upstream: str):
        self.upstream = urlsplit(upstream)
        self.fails: Callable[[str, str], bool] = lambda method, path: False
        self.failed: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy.fails(self.command, self.path):
                    proxy.failed.append(f"{self.command} {self.path}")
                    error = (
                        b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>"
                        b"ServiceUnavailable</Code><Message>injected by the test"
                        b"</Message></Error>"
                    )
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    self.wfile.write(error)
                    return
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in {"host", "expect", "connection"}
                }
                upstream = http.client.HTTPConnection(
                    proxy.upstream.hostname, proxy.upstream.port, timeout=30
                )
                try:
                    upstream.request(self.command, self.path, body, headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                finally:
                    upstream.close()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in {
                        "content-length",
                        "connection",
                        "server",
                        "date",
                    }:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def faulty_s3(s3, settings):
    """The ``s3`` bucket, reached through a FaultyProxy; set ``.proxy.fails``."""
    proxy = FaultyProxy(s3.endpoint)
    settings.AWS_S3_ENDPOINT_URL = proxy.endpoint
    settings.STORAGES = dict(settings.STORAGES)  # storages are rebuilt on the next use
    s3.proxy = proxy
    yield s3
    proxy.close()


@pytest.fixture
def fast_s3_timeouts(settings):
    """S3 timeouts of a second and two attempts, so the hanging cases end quickly."""
    settings.BACKUP_S3_CONNECT_TIMEOUT = 1
    settings.BACKUP_S3_READ_TIMEOUT = 1
    settings.BACKUP_S3_ATTEMPTS = 2


# PostgreSQL: the test database is the live one -------------------------------


def take_backup(*extra: str) -> str:
    output = call("backup", *extra)
    return output.split(" to ", 1)[1].split(" ", 1)[0]


def maintenance():
    return postgresql.connect(connections["default"].settings_dict, "postgres")


def other_databases(live: str) -> list[str]:
    """Databases a restore or a rehearsal made beside the live one (new or kept)."""
    with maintenance() as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname ~ %s ORDER BY 1",
            ["^" + re.escape(live) + "_(before|restore|verify)_[0-9]{14}$"],
        ).fetchall()
    return [r[0] for r in rows]


@pytest.fixture
def live(transactional_db):
    """The live database's name; afterwards, drop what the tests made beside it."""
    name = connections["default"].settings_dict["NAME"]
    yield name
    connections["default"].close()
    with maintenance() as conn:
        for other in other_databases(name):
            conn.execute(f'DROP DATABASE "{other}" WITH (FORCE)')
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "DROP TABLE IF EXISTS backup_pair, backup_probe, backup_probe_limits;"
            "DROP FUNCTION IF EXISTS backup_probe_ok(int), backup_probe_settings(int);"
        )
