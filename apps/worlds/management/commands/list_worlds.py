from typing import Any

from django.core.management.base import BaseCommand

from apps.core.output import write_json, write_table
from apps.worlds import services


class Command(BaseCommand):
    help = "List the worlds: ID, title and URL."
    # Reading only: no system checks first, as Django's shell, dbshell and
    # diffsettings (and stats, info, config) skip them; `check` runs them all.
    requires_system_checks: list = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--json", action="store_true", help="print JSON for scripts"
        )
        parser.add_argument(
            "--all",
            action="store_true",
            dest="include_deleted",
            help="include soft-deleted worlds (marked with their deletion time)",
        )

    def handle(self, *, json: bool, include_deleted: bool, **options: Any) -> None:
        worlds = services.list_worlds(include_deleted=include_deleted)
        if json:
            # DRF only for --json: its serializers bring psycopg, requests and
            # pygments, ~100 ms of the listing's start-up (bench/startup.py).
            from apps.worlds.serializers import WorldSerializer  # noqa: PLC0415

            write_json(self.stdout, WorldSerializer(worlds, many=True).data)
            return
        headers = ["ID", "Title", "URL"]
        rows = [[w.id, w.title, w.url] for w in worlds]
        if include_deleted:
            headers.append("Deleted")
            for row, w in zip(rows, worlds, strict=True):
                row.append(
                    w.deleted_at.isoformat(timespec="seconds") if w.deleted_at else ""
                )
        write_table(self.stdout, headers, rows)
