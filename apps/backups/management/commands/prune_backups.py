from django.core.management.base import BaseCommand, CommandError

from apps.backups.services import BackupError, delete_backups, plan_prune
from apps.core.output import counted, human_size, write_json, write_table


class Command(BaseCommand):
    help = (
        "Delete all but the newest N backups known to restore (BACKUP_KEEP does the "
        "same after each scheduled backup). Only verified backups, and complete ones "
        "newer than the newest verified, count; the newest verified and the newest "
        "complete backup are always kept; incomplete ones go once a day old."
    )
    # No system checks first: they check the web side (URLs, the admin, templates),
    # which a backup command never uses, and one failing must not stand between an
    # operator and a backup or a restore; the command checks the database and the
    # storage it uses itself (docs/backup-restore.md).
    requires_system_checks: list = []

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--keep",
            type=int,
            required=True,
            help="how many backups to keep that count (≥ 1)",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="list what would be kept and deleted, and why",
        )
        parser.add_argument(
            "--json", action="store_true", help="print JSON for scripts"
        )

    def handle(self, *, keep: int, dry_run: bool, json: bool, **options) -> None:
        try:
            decisions = plan_prune(keep)
            doomed = [d.backup for d in decisions if d.delete]
            if not dry_run:
                delete_backups(doomed)
        except BackupError as exc:
            raise CommandError(f"Pruning failed: {exc}") from exc
        kept = [d for d in decisions if not d.delete]
        if json:
            write_json(
                self.stdout,
                {
                    "dry_run": dry_run,
                    "keep": keep,
                    "deleted": [b.label for b in doomed],
                    "kept": [d.backup.label for d in kept],
                    "decisions": [d.as_dict() for d in decisions],
                },
            )
            return
        if decisions:
            delete = "would delete" if dry_run else "deleted"
            write_table(
                self.stdout,
                ["Name", "Engine", "Size", "Verified", "Action", "Why"],
                [
                    (
                        d.backup.label,
                        d.backup.engine,
                        human_size(d.backup.size),
                        d.backup.verified,
                        delete if d.delete else "keep",
                        d.reason,
                    )
                    for d in decisions
                ],
            )
        verb = "Would delete" if dry_run else "Deleted"
        total = human_size(sum(b.size for b in doomed))
        complete = sum(1 for d in kept if d.backup.complete)
        self.stdout.write(
            self.style.SUCCESS(
                f"{verb} {counted(len(doomed), 'backup')} ({total}); kept {len(kept)}, "
                f"{complete} of them complete (--keep {keep})."
            )
        )
