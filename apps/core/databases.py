"""Facts about the configured databases that several apps' commands need."""

from __future__ import annotations

from pathlib import Path

from django.db import connections
from django.utils.connection import ConnectionDoesNotExist


def database_size(alias: str = "default") -> int | None:
    """Return the size of a database in bytes, or None when it cannot be told.

    PostgreSQL: ``pg_database_size``; SQLite: the database file with its journal.
    A dump is smaller (no indexes, compressed), so this is the upper end of what a
    backup writes, and what its progress bar counts towards.
    """
    try:
        connection = connections[alias]
    except ConnectionDoesNotExist:
        return None  # the command that asked says so in its own words
    if connection.vendor == "postgresql":
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_database_size(current_database())")
                return int(cursor.fetchone()[0])
        except Exception:  # noqa: BLE001 - a size is a nicety, never why a backup fails
            return None  # the backup itself then says what is wrong
    if connection.vendor == "sqlite":
        name = str(connection.settings_dict["NAME"])
        path = Path(name)
        if name == ":memory:" or "mode=memory" in name or not path.exists():
            return None
        wal = path.with_name(path.name + "-wal")
        return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    return None
