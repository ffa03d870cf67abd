from django.core.management.base import BaseCommand, CommandError

from apps.backups.services import BackupError, delete_backups, plan_prune
from apps.core.output import counted, human_size, write_table


class Command(BaseCommand):
    help = (
        "Delete all but the newest N complete backups (BACKUP_KEEP does the same after "
        "each scheduled backup). The newest complete backup is always kept; incomplete "
        "and damaged ones do not count, and incomplete ones go once a day old."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--keep",
            type=int,
            required=True,
            help="how many complete backups to keep (≥ 1)",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="list what would be kept and deleted, and why",
        )

    def handle(self, *, keep: int, dry_run: bool, **options) -> None:
        try:
            decisions = plan_prune(keep)
            doomed = [d.backup for d in decisions if d.delete]
            if not dry_run:
                delete_backups(doomed)
        except BackupError as exc:
            raise CommandError(f"Pruning failed: {exc}") from exc
        if decisions:
            delete = "would delete" if dry_run else "deleted"
            write_table(
                self.stdout,
                ["Name", "Engine", "Size", "Action", "Why"],
                [
                    (
                        d.backup.label,
                        d.backup.engine,
                        human_size(d.backup.size),
                        delete if d.delete else "keep",
                        d.reason,
                    )
                    for d in decisions
                ],
            )
        verb = "Would delete" if dry_run else "Deleted"
        total = human_size(sum(b.size for b in doomed))
        kept = [d.backup for d in decisions if not d.delete]
        complete = sum(1 for b in kept if b.complete)
        self.stdout.write(
            self.style.SUCCESS(
                f"{verb} {counted(len(doomed), 'backup')} ({total}); kept {len(kept)}, "
                f"{complete} of them complete (--keep {keep})."
            )
        )
