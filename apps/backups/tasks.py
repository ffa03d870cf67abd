"""The scheduled backup job (seeded from BACKUP_SCHEDULE: docs/jobs.md)."""

from apps.backups import services
from apps.jobs.registry import FromSetting, job


@job(
    "backup",
    "Back the database up to the backup storage, then apply BACKUP_KEEP.",
    default_schedule=FromSetting("BACKUP_SCHEDULE"),
)
def backup_job(database: str = "default") -> str:
    result = services.backup(database)
    pruned = services.apply_retention()
    return f"{result.name} ({result.size} bytes); pruned {len(pruned)}"
