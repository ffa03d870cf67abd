from django.core.management.base import BaseCommand, CommandError

from apps.backups.services import BackupError, prune
from apps.core.output import counted, human_size, write_table


class Command(BaseCommand):
    help = "Delete all but the newest N backups (BACKUP_KEEP does the same after each scheduled backup)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--keep", type=int, required=True, help="how many backups to keep (≥ 1)"
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="list what would be deleted"
        )

    def handle(self, *, keep: int, dry_run: bool, **options) -> None:
        try:
            doomed = prune(keep, dry_run=dry_run)
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        if doomed:
            write_table(
                self.stdout,
                ["Name", "Engine", "Size"],
                [(b.name, b.engine, human_size(b.size)) for b in doomed],
            )
        verb = "Would delete" if dry_run else "Deleted"
        total = human_size(sum(b.size for b in doomed))
        self.stdout.write(
            self.style.SUCCESS(
                f"{verb} {counted(len(doomed), 'backup')} ({total}); kept the newest {keep}."
            )
        )
