from django.core.management.base import BaseCommand, CommandError

from apps.backups.services import BackupError, find_latest, restore, verify
from apps.core.output import Progress, add_noinput_argument, confirm, human_size


class Command(BaseCommand):
    help = (
        "Replace the database with a backup. The backup is verified first (exists, "
        "checksum, engine); PostgreSQL is restored into a new database that is swapped "
        "in only when complete, and the previous database is kept for a rollback."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "name",
            nargs="?",
            default="latest",
            help="backup name as `backups` shows it, or latest (the default)",
        )
        parser.add_argument(
            "--database", default="default", help="database alias (default: default)"
        )
        add_noinput_argument(parser)
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="verify the backup (checksum included) and say what would happen",
        )

    def handle(
        self, *, name: str, database: str, interactive: bool, dry_run: bool, **options
    ) -> None:
        try:
            if name == "latest":
                item, skipped = find_latest()
                for other in skipped:
                    self.stderr.write(
                        f"Skipped {other.name}: it is {other.state} "
                        f"({other.problem}); taking the newest complete backup."
                    )
                name = item.name
            if dry_run:
                plan = restore(name, database, dry_run=True)
                self._describe(plan)
                self.stdout.write(
                    self.style.SUCCESS(
                        f"Dry run: {plan.backup.name} is intact; nothing was changed."
                    )
                )
                return
            item = verify(name, database)
            if interactive and not confirm(
                f"Replace database {database!r} with {item.name} "
                f"({human_size(item.size)}, taken {item.created:%Y-%m-%d %H:%M} UTC)?",
                stdout=self.stdout,
            ):
                raise CommandError("Restore cancelled; nothing was changed.")
            bar = Progress(self.stdout, item.size, label="Restoring", unit="B")
            with bar:
                result = restore(
                    item.name,
                    database,
                    progress=lambda done: bar.advance(done - bar.done),
                )
        except BackupError as exc:
            raise CommandError(f"Restore failed: {exc}") from exc
        self._describe(result)
        self.stdout.write(
            self.style.SUCCESS(f"Restored {database} from {result.backup.name}.")
        )

    def _describe(self, result) -> None:
        verb = "would be kept" if result.dry_run else "is kept"
        self.stdout.write(
            f"Backup: {result.backup.name} ({result.engine}, "
            f"{human_size(result.backup.size)})\n"
            f"The previous database {verb} as: {result.previous}\n"
            f"Drop it once you are sure: {result.drop_hint}"
        )
