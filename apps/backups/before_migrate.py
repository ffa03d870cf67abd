"""A backup before pending migrations, so that an upgrade can always be rolled back.

``manage.py migrate_safely`` (what the django container runs at start instead of
``migrate``) asks :func:`back_up_before_migrating` first, then migrates.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connections
from django.db.migrations.executor import MigrationExecutor

from apps.core.output import counted

from .services import BackupError, BackupInfo, backup, backups_go_to_s3

POLICIES = ("auto", "always", "never")


@dataclass
class Outcome:
    pending: list[str]  # "app.migration", in the order migrate applies them
    backup: BackupInfo | None  # the backup taken, if one was
    reason: str  # why none was taken, when none was


def pending_migrations(database: str = "default") -> tuple[list[str], bool]:
    """Return the migrations ``migrate`` would apply, and whether none ever was."""
    executor = MigrationExecutor(connections[database])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    pending = [f"{m.app_label}.{m.name}" for m, backwards in plan if not backwards]
    return pending, not executor.loader.applied_migrations


def back_up_before_migrating(policy: str, database: str = "default") -> Outcome:
    """Take a backup when ``policy`` asks for one and migrations are pending.

    ``auto`` backs up when the backups go to S3: a folder inside a container is
    lost with it. ``always`` backs up to whatever storage is configured. A new
    database (no migration applied yet) holds nothing to back up. Raise BackupError
    when the backup fails: the caller must then not migrate.
    """
    if policy not in POLICIES:
        raise BackupError(
            f"MIGRATE_BACKUP must be one of {', '.join(POLICIES)}, not {policy!r}."
        )
    pending, fresh = pending_migrations(database)
    if not pending:
        return Outcome(pending, None, "No migrations to apply; no backup needed.")
    applying = f"applying {counted(len(pending), 'migration')}"
    if fresh:
        reason = f"No backup before {applying}: the database is new, nothing to lose."
        return Outcome(pending, None, reason)
    if policy == "never":
        return Outcome(
            pending, None, f"No backup before {applying}: MIGRATE_BACKUP=never."
        )
    if policy == "auto" and not backups_go_to_s3():
        reason = (
            f"No backup before {applying}: MIGRATE_BACKUP=auto backs up only to S3 "
            "(AWS_STORAGE_BUCKET_NAME); set MIGRATE_BACKUP=always to back up to the "
            "local backups folder."
        )
        return Outcome(pending, None, reason)
    return Outcome(pending, backup(database), "")
