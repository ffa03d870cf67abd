"""The scheduled backup job (Celery Beat runs it by BACKUP_SCHEDULE)."""

from apps.backups import services
from apps.jobs.registry import job


@job("backup", "Back the database up to the backup storage, then apply BACKUP_KEEP.")
def backup_job(database: str = "default") -> str:
    result = services.backup(database)
    pruned = services.apply_retention()
    return f"{result.name} ({result.size} bytes); pruned {len(pruned)}"
