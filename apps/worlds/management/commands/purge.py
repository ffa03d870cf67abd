"""purge: remove soft-deleted worlds, rooms and users for good."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.core.deletion import PurgeReport, purge_count
from apps.core.output import Progress, write_json
from apps.jobs.services import recorded
from apps.worlds import services

SECTIONS = services.PURGE_SECTIONS


class Command(BaseCommand):
    help = (
        "Remove what was soft-deleted (worlds with their rooms, messages and "
        "attendees; rooms; users), in bounded batches. No flag means all."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--worlds", action="store_true", help="soft-deleted worlds")
        parser.add_argument("--rooms", action="store_true", help="soft-deleted rooms")
        parser.add_argument("--users", action="store_true", help="soft-deleted users")
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would go, change nothing"
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=services.PURGE_BATCH,
            help=f"rows per transaction (default {services.PURGE_BATCH})",
        )
        parser.add_argument("--json", action="store_true")

    def handle(
        self, *, dry_run: bool, batch_size: int, json: bool, **options: Any
    ) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        chosen = [s for s in SECTIONS if options[s]] or list(SECTIONS)
        selection = {s: s in chosen for s in SECTIONS}
        report = PurgeReport(dry_run=dry_run)
        params = {**selection, "dry_run": dry_run}

        def work() -> None:
            for section in chosen:
                if not json:
                    self.stdout.write(
                        f"-> Purging {section}" + (" (dry run)" if dry_run else "")
                    )
                only = {s: s == section for s in SECTIONS}
                first = "worlds" in chosen
                if dry_run:  # counting only: nothing long to show
                    part = services.purge(**only, dry_run=True, worlds_first=first)
                else:
                    # The rows a dry run counts are the bar's total.
                    counted_part = services.purge(
                        **only, dry_run=True, worlds_first=first
                    )
                    total = sum(
                        n
                        for what, n in counted_part.counts.get(section, {}).items()
                        if what.endswith(" deleted")
                    )
                    with Progress(self.stdout, total, "   rows") as progress:
                        part = services.purge(
                            **only,
                            batch_size=batch_size,
                            worlds_first=first,
                            on_batch=lambda _model, n: progress.advance(n),
                        )
                report.merge(part)
                if not json:
                    self.write_counts(part.counts.get(section, {}))

        if dry_run:
            work()
        else:
            # Recorded like any run of the purge job: `jobs history purge` shows it.
            with recorded("purge", [], params, trigger="shell") as run:
                work()
                run.result = report.summary()
        if json:
            write_json(self.stdout, report.as_dict())
            return
        for reason in report.skipped:
            self.stderr.write(f"   skipped {reason}")
        if dry_run:
            self.stdout.write(
                self.style.SUCCESS(f"✔ Dry run, nothing changed: {report.summary()}")
            )
        else:
            self.stdout.write(self.style.SUCCESS(f"✔ Purged: {report.summary()}"))

    def write_counts(self, counts: dict[str, int]) -> None:
        if not any(counts.values()):
            self.stdout.write("   nothing to purge")
            return
        for what, count in counts.items():
            self.stdout.write(f"   {purge_count(count, what)}")
