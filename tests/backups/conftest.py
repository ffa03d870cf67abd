"""Fixtures for the backup tests: a private backup folder, a SQLite database file
under its own alias, PostgreSQL helpers and an S3 server (moto) on loopback."""

from __future__ import annotations

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
