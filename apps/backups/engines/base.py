"""What every engine provides (see postgresql.py and sqlite.py), and the checks
they share."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connections
from django.db.utils import ConnectionDoesNotExist

from ..catalog import BackupInfo
from ..errors import BackupDamaged, BackupError
from ..storage import Digest, ProgressCallback, Storage

VENDORS = ("postgresql", "sqlite")


@dataclass
class Dumped:
    """What a dump learnt about the database, for the backup's metadata."""

    server_version: str
    rows: dict[str, int] = field(default_factory=dict)


class SideCopy:
    """A backup restored beside the live database; dropped unless swapped in."""

    #: The DATABASES entry that reaches the copy.
    settings_dict: dict[str, Any]

    def swap_in(self, previous: str) -> None:
        """Make the copy the live database; keep the live one as ``previous``."""
        raise NotImplementedError


class Engine:
    vendor = ""

    def __init__(self, database: str):
        self.database = database

    @property
    def settings_dict(self) -> dict[str, Any]:
        return connections[self.database].settings_dict

    def extension(self, compress: bool) -> str:
        raise NotImplementedError

    def dump(self, out: Digest, compress: bool) -> Dumped:
        """Write a consistent dump of the database to ``out``."""
        raise NotImplementedError

    def previous_name(self, stamp: str) -> tuple[str, str]:
        """Return where a restore keeps the live database, and how to drop it."""
        raise NotImplementedError

    def side_copy(
        self,
        item: BackupInfo,
        storage: Storage,
        *,
        purpose: str,
        stamp: str,
        progress: ProgressCallback | None = None,
        jobs: int = 1,
    ) -> AbstractContextManager[SideCopy]:
        """Restore ``item`` beside the live database, verified; drop it on exit
        unless it was swapped in. ``purpose`` (restore, verify) names the copy."""
        raise NotImplementedError

    def table_names(self, settings_dict: dict[str, Any]) -> set[str]:
        """Return the tables of the database reached so (``schema.`` for non-public)."""
        raise NotImplementedError

    def count_rows(self, settings_dict: dict[str, Any]) -> dict[str, int]:
        """Return the number of rows of every table of the database reached so."""
        raise NotImplementedError


def engine_of(database: str) -> str:
    """Return ``postgresql`` or ``sqlite`` for a database alias."""
    try:
        vendor = connections[database].vendor
    except ConnectionDoesNotExist:
        raise BackupError(
            f"there is no database {database!r}; use one of: "
            f"{', '.join(connections.settings)}."
        ) from None
    if vendor not in VENDORS:
        raise BackupError(
            f"database {database!r} is {vendor}; backups support PostgreSQL and SQLite."
        )
    return vendor


def restore_jobs(jobs: int | None = None) -> int:
    """The number of restore jobs: ``jobs``, else BACKUP_RESTORE_JOBS, else cores."""
    chosen = jobs if jobs is not None else settings.BACKUP_RESTORE_JOBS
    return chosen if chosen and chosen > 0 else (os.cpu_count() or 1)


def check_checksum(item: BackupInfo, digest: Digest) -> None:
    """Raise BackupError when the bytes read do not match ``item``'s metadata."""
    expected = item.metadata.get("sha256")
    if digest.sha256.hexdigest() != expected or digest.size != item.metadata["size"]:
        raise BackupDamaged(
            f"{item.name} does not match its checksum (SHA-256 "
            f"{digest.sha256.hexdigest()[:12]}…, expected {str(expected)[:12]}…): it "
            "is damaged. The live database was not changed; restore another backup."
        )
