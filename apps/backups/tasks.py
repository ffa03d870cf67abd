"""The backup jobs: the scheduled backup (seeded from BACKUP_SCHEDULE: docs/jobs.md) and
the verification that follows it."""

from django.conf import settings

from apps.backups import services
from apps.core.output import counted
from apps.jobs import services as jobs
from apps.jobs.registry import FromSetting, job


@job(
    "backup",
    "Back the database up to the backup storage, apply BACKUP_KEEP, then verify "
    "the newest backup (BACKUP_VERIFY).",
    default_schedule=FromSetting("BACKUP_SCHEDULE"),
)
def backup_job(database: str = "default", compress: bool = True) -> str:
    result = services.backup(database, compress=compress)
    pruned = services.apply_retention()
    summary = f"{result.name} ({result.size} bytes); pruned {len(pruned)}"
    if not settings.BACKUP_VERIFY:
        return f"{summary}; not verified (BACKUP_VERIFY is off)"
    # A run of its own, so `jobs history` shows a failed verification as a failure.
    kwargs = {"database": database, "name": result.name}
    if settings.STAGEHAND_HAS_BROKER:
        run = jobs.send("verify-backup", kwargs=kwargs)
        return f"{summary}; verification queued as run {run.pk}"
    outcome = jobs.run("verify-backup", kwargs=kwargs)
    verdict = "ok" if outcome.error is None else f"failed: {outcome.error}"
    return f"{summary}; verification (run {outcome.run.pk}) {verdict}"


@job(
    "verify-backup",
    "Restore a backup (default: the newest) into a scratch database, check its "
    "migrations, integrity and row counts, drop it, and record the outcome.",
)
def verify_backup_job(database: str = "default", name: str = "latest") -> str:
    report = services.rehearse(name, database)
    if not report.ok:
        raise services.BackupError(
            f"{report.backup.name} failed its verification: {report.reason}"
        )
    rows = sum(t.found or 0 for t in report.tables)
    return (
        f"{report.backup.name} restores: {counted(rows, 'row')} in "
        f"{counted(len(report.tables), 'table')} as dumped, in {report.duration:.1f} s"
    )


@job(
    "restore",
    "Replace the database with a backup (as `restore NAME --noinput`); the API "
    "queues it once the backup's name was confirmed.",
)
def restore_job(name: str, database: str = "default") -> str:
    result = services.restore(name, database)
    return (
        f"Restored {database} from {result.backup.name}; the previous database is "
        f"kept as {result.previous} ({result.drop_hint})"
    )
