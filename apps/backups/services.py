"""Database backups: streamed dumps to storage, verified restore, rehearsals.

The parts: ``storage`` (a folder or S3, one interface), ``engines`` (PostgreSQL and
SQLite: dump, side copy, swap), ``catalog`` (names, metadata, listing),
``rehearsal`` (the checks of a restored copy) and ``retention``. This module puts them together for the commands, the API and the jobs.

A backup streams the engine's dump through a SHA-256 into a storage sink, writes the
metadata (with the row count of every table, taken in the dump's snapshot), and only
then publishes the dump under its final name: a dump is never visible without its
metadata. On any failure nothing is published, and a cleanup that failed is reported.

A restore never touches the live database before a complete, checksum-verified copy
exists beside it; only then is the copy swapped in. A rehearsal (``restore --dry-run``,
``restore --verify``, the ``verify-backup`` job) restores into a scratch database the
same way, checks the migrations recorded in it against the code's, runs the
integrity checks on it and compares its row counts with the metadata's, drops it, and
records the outcome beside the backup.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from django.core.management.color import no_style
from django.db import connections
from django.utils import timezone

from apps.core import __version__
from apps.jobs import services as jobs
from apps.jobs.models import JobRun

from . import engines
from .catalog import (
    COMPLETE,
    DAMAGED,
    INCOMPLETE,
    MAX_METADATA_SIZE,
    METADATA_SUFFIX,
    NAME_RE,
    NOT_VERIFIED,
    STAMP_FORMAT,
    VERIFIED_FAILED,
    VERIFIED_OK,
    BackupInfo,
    backup_name,
    find_latest,
    list_backups,
    lookup,
    metadata_problem,
    newest_verified,
    read_metadata,
    with_metadata,
    write_verification,
)
from .engines import engine_of, restore_jobs
from .errors import (
    BackupDamaged,
    BackupError,
    BackupNotFound,
    StorageUnavailable,
    describe,
)
from .rehearsal import Rehearsal, check_copy, temporary_alias
from .retention import PruneDecision, apply_retention, delete_backups, plan_prune, prune
from .storage import (
    PREFIX,
    Digest,
    Null,
    ProgressCallback,
    abort_quietly,
    backup_storage,
)

logger = logging.getLogger(__name__)

__all__ = [
    "COMPLETE",
    "DAMAGED",
    "INCOMPLETE",
    "MAX_METADATA_SIZE",
    "NAME_RE",
    "NOT_VERIFIED",
    "PREFIX",
    "VERIFIED_FAILED",
    "VERIFIED_OK",
    "BackupDamaged",
    "BackupError",
    "BackupInfo",
    "BackupNotFound",
    "PruneDecision",
    "Rehearsal",
    "StorageUnavailable",
    "apply_retention",
    "backup",
    "delete_backups",
    "engine_of",
    "find_latest",
    "list_backups",
    "newest_verified",
    "plan_prune",
    "prune",
    "rehearse",
    "restore",
    "verify",
]


def backups_go_to_s3() -> bool:
    """Whether the backup storage is S3, which outlives the host and its containers."""
    return backup_storage().is_s3


def describe_storage() -> str:
    return backup_storage().describe()


def probe_storage() -> str:
    """Check that the backup storage answers; return where it is (see Storage.probe)."""
    return backup_storage().probe()


# Backup -----------------------------------------------------------------------


def backup(
    database: str = "default",
    *,
    compress: bool = True,
    progress: ProgressCallback | None = None,
) -> BackupInfo:
    """Dump ``database`` into the backup storage and return the new backup.

    The dump is published under its final name only after it and its metadata are
    complete. Raise BackupError when anything fails; nothing is then published, and
    a cleanup that failed too is part of the message.
    """
    engine = engines.for_database(database)
    storage = backup_storage()
    created = dt.datetime.now(dt.UTC)
    name = backup_name(engine.vendor, created, engine.extension(compress))
    path = PREFIX + name
    where = storage.describe()
    with storage.errors("starting the backup", "run backup again"):
        sink = storage.open_sink(path)
    digest = Digest(sink, progress)
    try:
        dumped = engine.dump(digest, compress)
        sink.finish()
    except BaseException as exc:
        leftover = abort_quietly(sink)
        if isinstance(exc, BackupError) or not isinstance(exc, Exception):
            raise
        raise BackupError(
            f"writing the backup to storage failed: {where} ({describe(exc)})"
            f"{storage.cleanup_note(leftover)}; check that the backup storage is "
            "reachable and has room, then run backup again."
        ) from exc

    metadata = {
        "name": name,
        "engine": engine.vendor,
        "server_version": dumped.server_version,
        "size": digest.size,
        "sha256": digest.sha256.hexdigest(),
        "created": created.isoformat(),
        "compressed": compress,
        "stagehand_version": __version__,
        "database": database,
        "encryption": storage.encryption(),
        "rows": dumped.rows,
    }
    try:
        storage.write_object(
            path + METADATA_SUFFIX, json.dumps(metadata, indent=2).encode() + b"\n"
        )
    except BaseException as exc:
        leftover = abort_quietly(sink)
        if not isinstance(exc, Exception):
            raise
        raise BackupError(
            f"writing the backup's metadata failed: {where} ({describe(exc)}); the "
            f"dump was not published{storage.cleanup_note(leftover)}. "
            f"{storage.advice().capitalize()}, then run backup again."
        ) from exc
    try:
        sink.commit()
    except BaseException as exc:
        leftovers = [
            f"removing the dump: {text}" for text in [abort_quietly(sink)] if text
        ]
        if text := storage.delete_quietly(path + METADATA_SUFFIX):
            leftovers.append(f"removing {name}{METADATA_SUFFIX}: {text}")
        if not isinstance(exc, Exception):
            raise
        raise BackupError(
            f"publishing the backup failed: {where} ({describe(exc)})"
            f"{storage.cleanup_note('; '.join(leftovers))}. "
            f"{storage.advice().capitalize()}, then run backup again."
        ) from exc
    return BackupInfo(name, engine.vendor, digest.size, created, compress, metadata)


# Checks before a restore ------------------------------------------------------


def resolve(name: str) -> BackupInfo:
    """Return the backup called ``name`` (or the newest complete one for ``latest``)."""
    if name == "latest":
        item, skipped = find_latest()
        for other in skipped:
            logger.warning(
                "Skipped %s for latest: %s, %s.", other.name, other.state, other.problem
            )
        return item
    return lookup(name)


def verify(
    name: str, database: str = "default", *, checksum: bool = False
) -> BackupInfo:
    """Check that a backup exists, is complete and fits ``database``; return it.

    With ``checksum``, also read it whole and compare its SHA-256 (restore does that
    while it restores, before anything live changes).
    """
    target_engine = engine_of(database)
    item = resolve(name)
    storage = backup_storage()
    try:
        metadata = read_metadata(storage, item)
    except StorageUnavailable:
        raise
    except BackupError as exc:
        raise BackupError(
            f"{exc}, so it cannot be verified; restore another backup."
        ) from exc
    with_metadata(item, metadata)
    if metadata.get("engine") != item.engine:
        raise BackupError(
            f"{item.name}: {metadata_problem(item, metadata)}. Restore another backup."
        )
    if item.engine != target_engine:
        raise BackupError(
            f"{item.name} is a {item.engine} backup and database {database!r} is "
            f"{target_engine}; a backup restores only into the engine it came from."
        )
    if problem := metadata_problem(item, metadata):
        raise BackupError(f"{item.name}: {problem}. Restore another backup.")
    if checksum:
        digest = Digest(Null())
        for chunk in storage.read_chunks(item.path):
            digest.write(chunk)
        engines.check_checksum(item, digest)
    return item


# Rehearsal --------------------------------------------------------------------


def rehearse(
    name: str = "latest",
    database: str = "default",
    *,
    progress: ProgressCallback | None = None,
    pg_jobs: int | None = None,
) -> Rehearsal:
    """Restore ``name`` into a scratch database, check it, drop it; record the outcome.

    A backup that does not restore (checksum, pg_restore, integrity) is a failed
    rehearsal, recorded as such; a failure of the machinery (storage down, no
    pg_restore, no room to spool) raises BackupError and records nothing.
    """
    item = verify(name, database)
    engine = engines.for_database(database)
    storage = backup_storage()
    report = Rehearsal(item)
    started = time.monotonic()
    stamp = dt.datetime.now(dt.UTC).strftime(STAMP_FORMAT)
    try:
        with engine.side_copy(
            item,
            storage,
            purpose="verify",
            stamp=stamp,
            progress=progress,
            jobs=restore_jobs(pg_jobs) if engine.vendor == "postgresql" else 1,
        ) as copy:
            check_copy(engine, copy.settings_dict, report)
    except BackupDamaged as exc:
        report.fail(str(exc))
    report.duration = time.monotonic() - started
    write_verification(storage, item, report.as_dict())
    log = logger.info if report.ok else logger.error
    log("Verified %s: %s.", item.name, "ok" if report.ok else report.reason.rstrip("."))
    return report


# Restore ----------------------------------------------------------------------


@dataclass
class RestoreResult:
    backup: BackupInfo
    database: str
    engine: str
    previous: str  # where the database that was live before is kept
    drop_hint: str
    dry_run: bool = False
    rehearsal: Rehearsal | None = None
    interrupted: int = 0  # runs left running in the restored database, now marked

    def as_dict(self) -> dict[str, Any]:
        return {
            "backup": self.backup.as_dict(),
            "database": self.database,
            "previous": self.previous,
            "drop_hint": self.drop_hint,
            "dry_run": self.dry_run,
            "rehearsal": self.rehearsal.as_dict() if self.rehearsal else None,
            "interrupted": self.interrupted,
        }


def restore(
    name: str = "latest",
    database: str = "default",
    *,
    dry_run: bool = False,
    progress: ProgressCallback | None = None,
    pg_jobs: int | None = None,
    trigger: str = JobRun.Trigger.SHELL,
) -> RestoreResult:
    """Replace ``database`` with the backup ``name``; nothing changes on failure.

    With ``dry_run``, rehearse it instead (see ``rehearse``): nothing live changes.
    """
    item = verify(name, database)
    engine = engines.for_database(database)
    connection = connections[database]
    if connection.in_atomic_block:
        raise BackupError(
            "restore cannot run inside a database transaction; run it on its own."
        )
    stamp = dt.datetime.now(dt.UTC).strftime(STAMP_FORMAT)
    previous, drop_hint = engine.previous_name(stamp)
    result = RestoreResult(item, database, engine.vendor, previous, drop_hint, dry_run)
    if dry_run:
        result.rehearsal = rehearse(
            item.name, database, progress=progress, pg_jobs=pg_jobs
        )
        return result
    # Logged, since a restore started from the API may outlive its request.
    logger.warning("Restoring database %s from %s.", database, item.name)
    started = timezone.now()
    try:
        with engine.side_copy(
            item,
            backup_storage(),
            purpose="restore",
            stamp=stamp,
            progress=progress,
            jobs=restore_jobs(pg_jobs) if engine.vendor == "postgresql" else 1,
        ) as copy:
            if JobRun._meta.db_table in engine.table_names(copy.settings_dict):
                with temporary_alias(copy.settings_dict) as alias:
                    result.interrupted = _carry_run_state(
                        alias, item, database, previous, started, trigger
                    )
            copy.swap_in(previous)
    except BaseException as exc:
        logger.error(
            "Restoring database %s from %s failed: %s", database, item.name, exc
        )
        raise
    logger.warning(
        "Restored database %s from %s; the previous one is kept as %s.",
        database,
        item.name,
        previous,
    )
    return result


def _carry_run_state(
    alias: str,
    item: BackupInfo,
    database: str,
    previous: str,
    started: dt.datetime,
    trigger: str,
) -> int:
    """Bring the copy's run history up to this restore; return the runs interrupted.

    Runs left ``running`` in the backup (the backup job's own, among them) never
    finish now: they are marked as interrupted by this restore. The restore's own
    run is recorded in the copy, so it is in the history of the database that is
    live afterwards: as a job, its run carries on there (and its job finishes it);
    from a command, as a successful ``restore`` run.
    """
    runs = JobRun.objects.using(alias)
    interrupted = runs.filter(outcome=JobRun.Outcome.RUNNING).update(
        outcome=JobRun.Outcome.FAILURE,
        error=(
            f"Interrupted by the restore of {item.name} at "
            f"{started:%Y-%m-%d %H:%M:%S} UTC: this run was still running when the "
            "backup was taken, and never finished in the restored database."
        ),
    )
    own = jobs.current_run()
    if own is not None and own.pk is not None:
        fields = {
            f.attname: getattr(own, f.attname)
            for f in JobRun._meta.concrete_fields
            if not f.primary_key
        }
        if runs.filter(pk=own.pk).exists():  # another run has its id there
            own.pk = runs.create(**fields).pk
        else:
            runs.create(pk=own.pk, **fields)
            connection = connections[alias]
            with connection.cursor() as cursor:
                for sql in connection.ops.sequence_reset_sql(no_style(), [JobRun]):
                    cursor.execute(sql)
    else:
        runs.create(
            job="restore",
            args=[item.name],
            kwargs={"database": database},
            trigger=trigger,
            outcome=JobRun.Outcome.SUCCESS,
            started_at=started,
            duration=(timezone.now() - started).total_seconds(),
            result=(
                f"Restored {database} from {item.name}; the previous database is "
                f"kept as {previous}."
            ),
        )
    return interrupted
