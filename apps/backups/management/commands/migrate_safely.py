from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from apps.backups.before_migrate import POLICIES, back_up_before_migrating
from apps.backups.services import BackupError
from apps.core.output import counted


class Command(BaseCommand):
    help = (
        "Apply pending migrations after taking a backup (MIGRATE_BACKUP=auto: when "
        "backups go to S3; always; never), so an upgrade can be rolled back with "
        "`restore`. A failed backup stops before any migration is applied."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--database", default="default", help="database alias (default: default)"
        )
        parser.add_argument(
            "--backup",
            choices=POLICIES,
            help="override MIGRATE_BACKUP for this run",
        )
        parser.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help="never prompt (as migrate --noinput)",
        )

    def handle(
        self, *, database: str, backup: str | None, interactive: bool, **options
    ) -> None:
        policy = backup or settings.MIGRATE_BACKUP
        try:
            outcome = back_up_before_migrating(policy, database)
        except BackupError as exc:
            raise CommandError(
                f"Backup before migrating failed: {exc} No migration was applied. "
                "Fix the backup storage and start again, or set MIGRATE_BACKUP=never "
                "to migrate without a backup."
            ) from exc
        if outcome.backup is not None:
            self.stdout.write(
                f"Backup {outcome.backup.name} taken before applying "
                f"{counted(len(outcome.pending), 'migration')}."
            )
        else:
            self.stdout.write(outcome.reason)
        # Also with nothing pending: migrate's post_migrate installs missing defaults.
        call_command(
            "migrate",
            database=database,
            interactive=interactive,
            verbosity=options["verbosity"],
            stdout=self.stdout,
            stderr=self.stderr,
        )
