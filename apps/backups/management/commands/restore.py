from django.core.management.base import BaseCommand, CommandError

from apps.backups.services import (
    BackupError,
    Rehearsal,
    find_latest,
    rehearse,
    restore,
)
from apps.backups.services import verify as check_backup
from apps.core.output import (
    Progress,
    add_noinput_argument,
    confirm,
    counted,
    human_size,
    write_json,
    write_table,
)


class Command(BaseCommand):
    help = (
        "Replace the database with a backup. The backup is verified first (exists, "
        "checksum, engine); it is restored into a new database (or file) that is "
        "swapped in only when complete, and the previous database is kept for a "
        "rollback. --dry-run and --verify rehearse it in a scratch database instead."
    )
    # No system checks first: they check the web side (URLs, the admin, templates),
    # which a backup command never uses, and one failing must not stand between an
    # operator and a backup or a restore; the command checks the database and the
    # storage it uses itself (docs/backup-restore.md).
    requires_system_checks: list = []

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
            help="rehearse the restore in a scratch database and say what would happen",
        )
        parser.add_argument(
            "--verify",
            action="store_true",
            help="rehearse the restore in a scratch database and record the outcome",
        )
        parser.add_argument(
            "--jobs",
            type=int,
            default=None,
            help="parallel jobs: connections loading tables, pg_restore jobs building "
            "indexes (default: BACKUP_RESTORE_JOBS, else the number of cores); 1 "
            "streams the dump into one pg_restore without a local copy",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="print the outcome as JSON for scripts (a restore needs --noinput)",
        )

    def handle(
        self,
        *,
        name: str,
        database: str,
        interactive: bool,
        dry_run: bool,
        verify: bool,
        jobs: int | None,
        json: bool,
        **options,
    ) -> None:
        if jobs is not None and jobs < 1:
            raise CommandError("--jobs must be at least 1.")
        if json and interactive and not (dry_run or verify):
            raise CommandError(
                "--json leaves standard output to the JSON, so it cannot ask: add "
                "--noinput to restore without the question."
            )
        verbose = options["verbosity"] >= 2
        try:
            if name == "latest":
                item, skipped = find_latest()
                for other in skipped:
                    self.stderr.write(
                        f"Skipped {other.name}: it is {other.state} "
                        f"({other.problem}); taking the newest complete backup."
                    )
                name = item.name
            if verify and not dry_run:
                report = rehearse(name, database, pg_jobs=jobs)
                if json:
                    write_json(self.stdout, report.as_dict())
                    self._end_rehearsal(report, "", quiet=True)
                    return
                self._report(report, verbose)
                self._end_rehearsal(report, f"{report.backup.name} restores")
                return
            if dry_run:
                plan = restore(name, database, dry_run=True, pg_jobs=jobs)
                if json:
                    write_json(self.stdout, _as_json(plan))
                    self._end_rehearsal(plan.rehearsal, "", quiet=True)
                    return
                self._describe(plan)
                self._report(plan.rehearsal, verbose)
                self._end_rehearsal(
                    plan.rehearsal,
                    f"Dry run: {plan.backup.name} is intact and restores; nothing "
                    "was changed",
                )
                return
            item = check_backup(name, database)
            if interactive and not confirm(
                f"Replace database {database!r} with {item.name} "
                f"({human_size(item.size)}, taken {item.created:%Y-%m-%d %H:%M} UTC)?",
                stdout=self.stdout,
            ):
                raise CommandError("Restore cancelled; nothing was changed.")
            # With --json, standard output holds only the JSON; a terminal still
            # sees the progress on standard error.
            bar = Progress(
                self.stderr if json else self.stdout,
                item.size,
                label="Restoring",
                unit="B",
            )
            with bar:
                result = restore(
                    item.name,
                    database,
                    progress=bar.reach,
                    pg_jobs=jobs,
                )
        except BackupError as exc:
            raise CommandError(f"Restore failed: {exc}") from exc
        if json:
            write_json(self.stdout, _as_json(result))
            return
        self._describe(result)
        if result.interrupted:
            self.stdout.write(
                f"Marked {counted(result.interrupted, 'run')} left running in the "
                "backup as interrupted by this restore."
            )
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

    def _report(self, report: Rehearsal, verbose: bool) -> None:
        """What the rehearsal in the scratch database showed."""
        migrations = report.migrations
        if migrations:
            pending = len(migrations["pending"])
            unknown = len(migrations["unknown"])
            verdict = (
                f"{counted(unknown, 'migration')} unknown to this code"
                if unknown
                else "the code's"
                if not pending
                else f"precede the code's ({pending} to apply with migrate)"
            )
            self.stdout.write(
                f"Migrations: {counted(migrations['recorded'], 'migration')} "
                f"recorded; {verdict}."
            )
        if report.integrity_note:
            self.stdout.write(f"Integrity checks: {report.integrity_note}.")
        elif migrations:
            problems = report.integrity
            self.stdout.write(
                "Integrity checks: "
                + ("; ".join(problems) if problems else "no problems")
                + "."
            )
        if report.tables:
            wrong = [t for t in report.tables if not t.ok]
            rows = sum(t.found or 0 for t in report.tables)
            if not report.counts_recorded:
                verdict = "the backup recorded no counts to compare with (older backup)"
            elif wrong:
                verdict = f"{counted(len(wrong), 'table')} differ from the dump"
            else:
                verdict = "all as counted at dump time"
            self.stdout.write(
                f"Rows: {counted(rows, 'row')} in "
                f"{counted(len(report.tables), 'table')}; {verdict}."
            )
            shown = report.tables if verbose else wrong
            if shown:
                write_table(
                    self.stdout,
                    ["Table", "Dumped", "Restored"],
                    [
                        (
                            t.table,
                            "-" if t.expected is None else t.expected,
                            "missing" if t.found is None else t.found,
                        )
                        for t in shown
                    ],
                )

    def _end_rehearsal(
        self, report: Rehearsal, success: str, *, quiet: bool = False
    ) -> None:
        if not report.ok:
            raise CommandError(
                f"Restore failed: the rehearsal of {report.backup.name} failed: "
                f"{report.reason.rstrip('.')}. It is recorded as failed; the live "
                "database was not changed.",
                returncode=1,
            )
        if quiet:
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"{success} (rehearsed in a scratch database in "
                f"{report.duration:.1f} s, then dropped)."
            )
        )


def _as_json(result) -> dict:
    """The restore's (or dry run's) outcome as the API answers it."""
    # DRF only for --json: its serializers cost ~100 ms of every start-up
    # (docs/architecture.md, "What a command loads").
    from apps.backups.serializers import RestoreResultSerializer  # noqa: PLC0415

    return RestoreResultSerializer(result).data
