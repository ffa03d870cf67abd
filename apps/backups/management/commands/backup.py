import time

from django.core.management.base import BaseCommand, CommandError

from apps.backups.services import BackupError, backup
from apps.core.databases import database_size
from apps.core.output import Progress, human_duration, human_size, write_json


class Command(BaseCommand):
    help = (
        "Dump the database into the backup storage under backup/, streamed, with a "
        "metadata file holding its SHA-256. Nothing is left behind when it fails."
    )
    # No system checks first: they check the web side (URLs, the admin, templates),
    # which a backup command never uses, and one failing must not stand between an
    # operator and a backup or a restore; the command checks the database and the
    # storage it uses itself (docs/backup-restore.md).
    requires_system_checks: list = []

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--database", default="default", help="database alias (default: default)"
        )
        parser.add_argument(
            "--no-compress",
            action="store_true",
            help="store the dump uncompressed (faster, larger)",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="print the new backup as JSON (name, size, …) for scripts",
        )

    def handle(
        self, *, database: str, no_compress: bool, json: bool, **options
    ) -> None:
        started = time.monotonic()
        # The database's size: the most a dump writes, so the bar's end and ETA.
        bar = Progress(
            # With --json, standard output holds only the JSON; a terminal still
            # sees the progress on standard error.
            self.stderr if json else self.stdout,
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
                    progress=bar.reach,
                )
            except BackupError as exc:
                raise CommandError(f"Backup failed: {exc}") from exc
        if json:
            # DRF only for --json: its serializers cost ~100 ms of every start-up
            # (docs/architecture.md, "What a command loads").
            from apps.backups.serializers import BackupSerializer  # noqa: PLC0415

            write_json(
                self.stdout,
                {
                    **BackupSerializer(result).data,
                    "duration": time.monotonic() - started,
                },
            )
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Backed up {database} to {result.name} "
                f"({human_size(result.size)}) in "
                f"{human_duration(time.monotonic() - started)}."
            )
        )
