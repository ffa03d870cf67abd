"""SQLite: the online backup API out (gzip), a checked file beside the live one in.

The online backup API copies a consistent snapshot to a temporary file while other
connections keep writing; the rows are counted in that snapshot and it is streamed
and removed. A restore writes the backup to a hidden file beside the live one, checks
it with ``PRAGMA integrity_check`` and renames it over the live file atomically, the
previous file kept under a dated name.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.db import connections

from ..catalog import BackupInfo
from ..errors import BackupDamaged, BackupError
from ..storage import CHUNK, Digest, Null, ProgressCallback, Storage
from .base import Dumped, Engine, SideCopy, check_checksum


def database_path(settings_dict: dict) -> Path:
    name = str(settings_dict.get("NAME") or "")
    if not name or name == ":memory:" or "mode=memory" in name:
        raise BackupError(
            "this SQLite database lives in memory; only a database file can be "
            "backed up or restored."
        )
    return Path(name)


def table_names_on(conn: sqlite3.Connection) -> list[str]:
    """Return the ordinary tables (virtual tables left out)."""
    return [
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
            "AND coalesce(sql, '') NOT LIKE 'CREATE VIRTUAL%' ORDER BY name"
        )
    ]


def count_rows_on(conn: sqlite3.Connection) -> dict[str, int]:
    """Return the rows of every ordinary table (virtual tables left out)."""
    tables = table_names_on(conn)
    return {
        table: conn.execute(
            "SELECT count(*) FROM " + '"' + table.replace('"', '""') + '"'
        ).fetchone()[0]
        for table in tables
    }


def free_name(live: Path, tag: str) -> Path:
    """Return ``<stem><tag><suffix>`` beside ``live``, numbered when that is taken
    (two restores within one second)."""
    candidate = live.with_name(f"{live.stem}{tag}{live.suffix}")
    number = 1
    while candidate.exists():
        number += 1
        candidate = live.with_name(f"{live.stem}{tag}-{number}{live.suffix}")
    return candidate


class SQLite(Engine):
    vendor = "sqlite"

    def extension(self, compress: bool) -> str:
        return "sqlite3.gz" if compress else "sqlite3"

    def dump(self, out: Digest, compress: bool) -> Dumped:
        source_path = database_path(self.settings_dict)
        if not source_path.exists():
            raise BackupError(f"the SQLite database {source_path} does not exist.")
        # The copy is the only moment the data touches local disk twice, and it is
        # removed as soon as it has been streamed.
        with tempfile.TemporaryDirectory(prefix="stagehand-backup-") as tmp:
            snapshot = Path(tmp) / "snapshot.sqlite3"
            source = sqlite3.connect(source_path, timeout=20)
            target = sqlite3.connect(snapshot)
            try:
                source.backup(target)
                rows = count_rows_on(target)
            finally:
                target.close()
                source.close()
            compressor = zlib.compressobj(6, zlib.DEFLATED, 31) if compress else None
            with open(snapshot, "rb") as fh:
                while chunk := fh.read(CHUNK):
                    out.write(compressor.compress(chunk) if compressor else chunk)
            if compressor:
                out.write(compressor.flush())
        return Dumped(sqlite3.sqlite_version, rows)

    def table_names(self, settings_dict: dict[str, Any]) -> set[str]:
        conn = sqlite3.connect(database_path(settings_dict))
        try:
            return set(table_names_on(conn))
        finally:
            conn.close()

    def count_rows(self, settings_dict: dict[str, Any]) -> dict[str, int]:
        conn = sqlite3.connect(database_path(settings_dict))
        try:
            return count_rows_on(conn)
        finally:
            conn.close()

    def previous_name(self, stamp: str) -> tuple[str, str]:
        live = database_path(self.settings_dict)
        previous = str(free_name(live, f"-before-{stamp}"))
        return previous, f"rm {previous}"

    @contextmanager
    def side_copy(
        self,
        item: BackupInfo,
        storage: Storage,
        *,
        purpose: str,
        stamp: str,
        progress: ProgressCallback | None = None,
        jobs: int = 1,
    ) -> Iterator[SideCopy]:
        live = database_path(self.settings_dict)
        temp = live.with_name(f".{live.name}.{purpose}-{uuid.uuid4().hex}")
        try:
            self._write_checked(item, storage, temp, progress)
            yield _Copy(self.database, live, temp)
        finally:
            temp.unlink(missing_ok=True)

    def _write_checked(
        self,
        item: BackupInfo,
        storage: Storage,
        temp: Path,
        progress: ProgressCallback | None,
    ) -> None:
        digest = Digest(Null(), progress)
        decompressor = zlib.decompressobj(31) if item.compressed else None
        try:
            with open(temp, "xb") as fh:
                for chunk in storage.read_chunks(item.path):
                    digest.write(chunk)
                    fh.write(decompressor.decompress(chunk) if decompressor else chunk)
                if decompressor:
                    fh.write(decompressor.flush())
                fh.flush()
                os.fsync(fh.fileno())
        except zlib.error as exc:
            check_checksum(item, digest)
            raise BackupDamaged(
                f"{item.name} could not be decompressed ({exc}); the live database "
                "was not changed. Restore another backup."
            ) from exc
        check_checksum(item, digest)
        _check_integrity(item, temp)


class _Copy(SideCopy):
    def __init__(self, database: str, live: Path, temp: Path):
        self.database = database
        self.live = live
        self.temp = temp
        self.settings_dict = {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(temp),
        }

    def swap_in(self, previous: str) -> None:
        for alias in connections:
            conn = connections[alias]
            if conn.vendor == "sqlite" and conn.settings_dict.get("NAME") in {
                str(self.live),
                str(self.temp),
            }:
                conn.close()
        _checkpoint(self.live)
        if self.live.exists():
            # A second name for the current file: it stays as the rollback copy
            # when the restored file takes the live name.
            os.link(self.live, previous)
        os.replace(self.temp, self.live)


def _check_integrity(item: BackupInfo, path: Path) -> None:
    try:
        check = sqlite3.connect(path)
        try:
            rows = check.execute("PRAGMA integrity_check").fetchall()
            # Rollback-journal mode, so no stale -wal file can ever apply to it.
            check.execute("PRAGMA journal_mode=DELETE")
        finally:
            check.close()
    except sqlite3.DatabaseError as exc:
        rows = [(str(exc),)]
    if rows != [("ok",)]:
        raise BackupDamaged(
            f"{item.name} fails SQLite's integrity check "
            f"({'; '.join(str(r[0]) for r in rows[:3])}); the live database was "
            "not changed. Restore another backup."
        )


def _checkpoint(live: Path) -> None:
    """Fold a write-ahead log into the live file so none is left to misapply."""
    wal = live.with_name(live.name + "-wal")
    if not wal.exists():
        return
    conn = sqlite3.connect(live, timeout=20)
    try:
        busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.close()
    if busy:
        raise BackupError(
            f"{live} is busy in write-ahead-log mode; stop the web and worker "
            "processes and run restore again. The live database was not changed."
        )
