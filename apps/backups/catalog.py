"""What is in the backup storage: names, metadata, verification records, states.

A backup is ``backup/<engine>-backup-YYYYmmddHHMMSS-<microseconds>-<6 random hex>.<ext>``
and, beside it, ``<that name>.json`` (its metadata: engine, server version, size,
SHA-256, creation time, row counts, Stagehand version) and, once a rehearsal has
restored it, ``<that name>.verified.json`` (the outcome). Names taken before
sub-second names (``…-YYYYmmddHHMMSS.<ext>``) still list and restore.

:func:`parse_name` is the one place a name becomes a :class:`BackupInfo`. A dump
without readable metadata is INCOMPLETE, one whose metadata disagrees with it DAMAGED;
both are listed (so they can be seen and pruned), neither restores as ``latest``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from .errors import BackupError, BackupNotFound, StorageUnavailable, describe
from .storage import PREFIX, Storage, backup_storage

# ``-<microseconds>-<random>`` is absent from names taken before it existed.
NAME_RE = re.compile(
    r"^(?P<engine>postgresql|sqlite)-backup-(?P<stamp>\d{14})"
    r"(?:-(?P<micro>\d{6})-(?P<tag>[0-9a-f]{6}))?"
    r"\.(?P<ext>dump|sqlite3|sqlite3\.gz)$"
)
STAMP_FORMAT = "%Y%m%d%H%M%S"
METADATA_SUFFIX = ".json"
VERIFIED_SUFFIX = ".verified.json"

# Metadata is a few hundred bytes (a few KiB with row counts); anything far larger is
# not loaded into memory.
MAX_METADATA_SIZE = 64 * 1024

COMPLETE, INCOMPLETE, DAMAGED = "complete", "incomplete", "damaged"
VERIFIED_OK, VERIFIED_FAILED, NOT_VERIFIED = "ok", "failed", "not yet"


@dataclass
class BackupInfo:
    name: str
    engine: str
    size: int
    created: dt.datetime
    compressed: bool | None  # None: a PostgreSQL dump whose metadata is unreadable
    metadata: dict[str, Any] = field(default_factory=dict)
    # COMPLETE, INCOMPLETE (no readable metadata) or DAMAGED (metadata disagrees
    # with the dump); ``problem`` says why when it is not complete.
    state: str = COMPLETE
    problem: str = ""
    # Only the metadata file is left (a publication failed and so did its cleanup);
    # never listed, only pruned.
    metadata_only: bool = False
    # The outcome of the last rehearsal (``verification`` record), if any.
    verification: dict[str, Any] | None = None

    @property
    def path(self) -> str:
        return PREFIX + self.name

    @property
    def label(self) -> str:
        """The name of what is stored: the dump, or its metadata file alone."""
        return self.name + METADATA_SUFFIX if self.metadata_only else self.name

    @property
    def complete(self) -> bool:
        return self.state == COMPLETE

    @property
    def verified(self) -> str:
        """``ok``, ``failed`` or ``not yet``: what a rehearsal of it showed."""
        if not self.verification:
            return NOT_VERIFIED
        return VERIFIED_OK if self.verification.get("ok") is True else VERIFIED_FAILED

    @property
    def verified_ok(self) -> bool:
        return self.verified == VERIFIED_OK

    @property
    def verified_at(self) -> dt.datetime | None:
        if not self.verification:
            return None
        try:
            return dt.datetime.fromisoformat(str(self.verification.get("verified_at")))
        except ValueError:
            return None

    @property
    def verified_text(self) -> str:
        """``ok``, ``failed: <reason>`` or ``not yet``, as ``backups`` shows it."""
        if self.verified == VERIFIED_FAILED:
            return f"failed: {self.verification.get('reason') or 'no reason recorded'}"
        return self.verified

    @property
    def verify_problem(self) -> str:
        """Why its last rehearsal failed; empty when it did not fail."""
        if self.verified != VERIFIED_FAILED:
            return ""
        return str(self.verification.get("reason") or "")

    def as_dict(self) -> dict[str, Any]:
        verified_at = self.verified_at
        return {
            "name": self.name,
            "engine": self.engine,
            "size": self.size,
            "created": self.created.isoformat(),
            "compressed": self.compressed,
            "state": self.state,
            "problem": self.problem,
            "verified": self.verified,
            "verified_at": verified_at.isoformat() if verified_at else None,
            "verify_problem": self.verify_problem,
        }


def backup_name(engine: str, created: dt.datetime, ext: str) -> str:
    """Return a name that sorts by time and never collides, even within a second."""
    return (
        f"{engine}-backup-{created.strftime(STAMP_FORMAT)}-{created:%f}-"
        f"{secrets.token_hex(3)}.{ext}"
    )


def parse_name(name: str, size: int = 0) -> BackupInfo | None:
    """Return the backup a dump's name describes (state unknown yet), or None."""
    match = NAME_RE.match(name)
    if not match:
        return None
    created = dt.datetime.strptime(match["stamp"], STAMP_FORMAT).replace(
        tzinfo=dt.UTC, microsecond=int(match["micro"] or 0)
    )
    engine = match["engine"]
    return BackupInfo(
        name=name,
        engine=engine,
        size=size,
        created=created,
        # A PostgreSQL dump is .dump either way; only its metadata knows.
        compressed=match["ext"] != "sqlite3" if engine == "sqlite" else None,
    )


# Metadata ---------------------------------------------------------------------


def _read_json(storage: Storage, path: str, label: str) -> dict[str, Any]:
    """Return the JSON object at ``path``; raise BackupError saying why it is unreadable.

    StorageUnavailable (the storage failing, not the file) passes through as it is.
    """
    try:
        raw = bytearray()
        for chunk in storage.read_chunks(path):
            raw += chunk
            if len(raw) > MAX_METADATA_SIZE:
                raise ValueError(f"it is larger than {MAX_METADATA_SIZE} bytes")
        data = json.loads(raw)
    except StorageUnavailable:
        raise
    except (BackupNotFound, ValueError, RecursionError) as exc:
        raise BackupError(f"{label} ({describe(exc)})") from exc
    if not isinstance(data, dict):
        raise BackupError(f"{label} (it holds no JSON object)")
    return data


def read_metadata(storage: Storage, item: BackupInfo) -> dict[str, Any]:
    """Return the metadata of ``item``; raise BackupError saying why it is unreadable."""
    return _read_json(
        storage, item.path + METADATA_SUFFIX, f"{item.name} has no readable metadata"
    )


def metadata_problem(item: BackupInfo, metadata: dict[str, Any]) -> str:
    """Return why ``metadata`` does not describe ``item``'s dump, or ''."""
    if metadata.get("engine") != item.engine:
        return (
            f"its metadata says {metadata.get('engine')!r}; the files do not belong "
            "together"
        )
    if item.size != metadata.get("size"):
        return (
            f"it is {item.size} bytes but was written as {metadata.get('size')} "
            "bytes: it is truncated or damaged"
        )
    checksum = metadata.get("sha256")
    if not isinstance(checksum, str) or not re.fullmatch(r"[0-9a-f]{64}", checksum):
        return "its metadata holds no SHA-256 checksum to verify it with"
    return ""


def with_metadata(item: BackupInfo, metadata: dict[str, Any]) -> None:
    item.metadata = metadata
    if item.engine == "postgresql" and isinstance(metadata.get("compressed"), bool):
        item.compressed = metadata["compressed"]


def _classify(storage: Storage, item: BackupInfo) -> None:
    try:
        metadata = read_metadata(storage, item)
    except StorageUnavailable:
        raise
    except BackupError as exc:
        item.state, item.problem = INCOMPLETE, str(exc).removeprefix(f"{item.name} ")
        return
    with_metadata(item, metadata)
    if problem := metadata_problem(item, metadata):
        item.state, item.problem = DAMAGED, problem


def read_verification(storage: Storage, item: BackupInfo) -> None:
    """Attach ``item``'s verification record; an unreadable one counts as failed."""
    try:
        item.verification = _read_json(
            storage,
            item.path + VERIFIED_SUFFIX,
            "the verification record is unreadable",
        )
    except StorageUnavailable:
        raise
    except BackupError as exc:
        item.verification = {"ok": False, "reason": str(exc)}


def write_verification(storage: Storage, item: BackupInfo, record: dict) -> None:
    """Record the outcome of a rehearsal beside the backup (replacing an older one)."""
    with storage.errors(
        f"recording the verification of {item.name}", "run the verification again"
    ):
        storage.write_object(
            item.path + VERIFIED_SUFFIX,
            json.dumps(record, indent=2).encode() + b"\n",
        )
    item.verification = record


# Listing ----------------------------------------------------------------------


def list_backups() -> list[BackupInfo]:
    """Return the backups in storage, newest first, each with its state.

    Raise StorageUnavailable when the storage does not answer.
    """
    return scan()[0]


def scan() -> tuple[list[BackupInfo], list[BackupInfo]]:
    """Return the backups, and the metadata files left without their dump."""
    storage = backup_storage()
    with storage.errors("listing the backups", "run the command again"):
        files = dict(storage.list_files())
        found, orphans = [], []
        for name, size in files.items():
            dump = name.removesuffix(METADATA_SUFFIX)
            item = parse_name(dump, size)
            if item is None or (dump != name and dump in files):
                continue
            if dump != name:
                item.state, item.metadata_only = INCOMPLETE, True
                item.problem = "only its metadata file is left: the dump is gone"
                orphans.append(item)
                continue
            if name + METADATA_SUFFIX in files:
                _classify(storage, item)
            else:
                item.state, item.problem = INCOMPLETE, "it has no metadata file"
            if name + VERIFIED_SUFFIX in files:
                read_verification(storage, item)
            found.append(item)
    found.sort(key=lambda b: (b.created, b.name), reverse=True)
    return found, orphans


def newest_verified() -> BackupInfo | None:
    """Return the newest backup whose last rehearsal succeeded, or None.

    Reads only verification records, newest first, until one says ok (cheap enough
    for ``stats`` and the operations page, however many backups there are).
    """
    storage = backup_storage()
    with storage.errors("listing the backups", "run the command again"):
        files = dict(storage.list_files())
        candidates = []
        for name in files:
            dump = name.removesuffix(VERIFIED_SUFFIX)
            if dump == name or dump not in files or dump + METADATA_SUFFIX not in files:
                continue
            if (item := parse_name(dump, files[dump])) is not None:
                candidates.append(item)
        candidates.sort(key=lambda b: (b.created, b.name), reverse=True)
        for item in candidates:
            read_verification(storage, item)
            if item.verified_ok:
                return item
    return None


def find_latest() -> tuple[BackupInfo, list[BackupInfo]]:
    """Return the newest complete backup and the newer ones skipped (not complete)."""
    backups = list_backups()
    skipped = []
    for item in backups:
        if item.complete:
            return item, skipped
        skipped.append(item)
    if skipped:
        raise BackupNotFound(
            f"there is no complete backup: {len(skipped)} incomplete or damaged "
            f"({skipped[0].name}: {skipped[0].problem}); take one with `backup`."
        )
    raise BackupNotFound("there are no backups yet; take one with `backup`.")


def lookup(name: str) -> BackupInfo:
    """Return the backup called ``name`` as stored (metadata not read yet)."""
    name = name.removeprefix(PREFIX)
    item = parse_name(name)
    if item is None:
        raise BackupError(
            f"{name!r} is not a backup name; `backups` lists them "
            "(such as postgresql-backup-20250101020000-123456-3f9a1c.dump)."
        )
    storage = backup_storage()
    with storage.errors(f"looking up {name}", "run the restore again"):
        if not storage.exists(item.path):
            raise BackupNotFound(
                f"there is no backup {name}; `backups` lists the ones there are."
            )
        item.size = storage.size(item.path)
    return item
