import datetime as dt

from django.core.management.base import BaseCommand, CommandError

from apps.backups.services import VERIFIED_FAILED, BackupError, list_backups
from apps.core.output import (
    counted,
    human_duration,
    human_size,
    write_json,
    write_table,
)


class Command(BaseCommand):
    help = (
        "List the backups in the backup storage, newest first, with whether a "
        "rehearsal verified each (ok, failed, not yet); an incomplete or damaged one "
        "is shown as such and never restores as latest."
    )
    # No system checks first: they check the web side (URLs, the admin, templates),
    # which a backup command never uses, and one failing must not stand between an
    # operator and a backup or a restore; the command checks the database and the
    # storage it uses itself (docs/backup-restore.md).
    requires_system_checks: list = []

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--json", action="store_true", help="print JSON for scripts"
        )

    def handle(self, *, json: bool, **options) -> None:
        try:
            backups = list_backups()
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        if json:
            # DRF only for --json: its serializers cost ~100 ms of every start-up
            # (docs/architecture.md, "What a command loads").
            from apps.backups.serializers import BackupSerializer  # noqa: PLC0415

            write_json(self.stdout, BackupSerializer(backups, many=True).data)
            return
        now = dt.datetime.now(dt.UTC)
        write_table(
            self.stdout,
            ["Name", "Engine", "Size", "Age", "Created", "Verified", "State"],
            [
                (
                    b.name,
                    b.engine,
                    human_size(b.size),
                    human_duration(max((now - b.created).total_seconds(), 0)),
                    b.created.strftime("%Y-%m-%d %H:%M:%S UTC"),
                    b.verified,
                    "ok" if b.complete else b.state,
                )
                for b in backups
            ],
        )
        unusable = [b for b in backups if not b.complete]
        for b in unusable:
            self.stdout.write(
                f"{b.name} is {b.state}: {b.problem}. It cannot be restored; "
                "prune_backups removes it (an incomplete one once a day old)."
            )
        for b in backups:
            if b.complete and b.verified == VERIFIED_FAILED:
                when = b.verified_at
                at = f" on {when:%Y-%m-%d %H:%M} UTC" if when else ""
                self.stdout.write(
                    f"{b.name} failed its verification{at}: {b.verified_text[8:]}. "
                    "Do not count on it; `restore --verify NAME` tries again."
                )
        note = f", {len(unusable)} not restorable" if unusable else ""
        self.stdout.write(
            self.style.SUCCESS(f"{counted(len(backups), 'backup')}{note}.")
        )
