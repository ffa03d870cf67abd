import time

from django.core.management.base import BaseCommand, CommandError

from apps.backups.services import BackupError, backup
from apps.core.databases import database_size
from apps.core.output import Progress, human_duration, human_size


class Command(BaseCommand):
    help = (
        "Dump the database into the backup storage under backup/, streamed, with a "
        "metadata file holding its SHA-256. Nothing is left behind when it fails."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--database", default="default", help="database alias (default: default)"
        )
        parser.add_argument(
            "--no-compress",
            action="store_true",
            help="store the dump uncompressed (faster, larger)",
        )

    def handle(self, *, database: str, no_compress: bool, **options) -> None:
        started = time.monotonic()
        # The database's size: the most a dump writes, so the bar's end and ETA.
        bar = Progress(
            self.stdout,
            database_size(database),
            label="Dumping",
            unit="B",
            summary=False,  # the last line says size and duration
        )
        with bar:
            try:
                result = backup(
                    database,
                    compress=not no_compress,
                    progress=lambda done: bar.advance(done - bar.done),
                )
            except BackupError as exc:
                raise CommandError(f"Backup failed: {exc}") from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"Backed up {database} to {result.name} "
                f"({human_size(result.size)}) in "
                f"{human_duration(time.monotonic() - started)}."
            )
        )
