"""cache flush: clear the configured cache."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.core.output import counted, write_json
from apps.core.subcommands import add_subcommands
from apps.jobs import services


class Command(BaseCommand):
    help = "Clear the configured cache (on Redis, only the cache's own keys)."

    def add_arguments(self, parser) -> None:
        sub = add_subcommands(parser)
        flush = sub.add_parser("flush", help="delete every cached value")
        flush.add_argument(
            "--json",
            action="store_true",
            help='print {"flushed", "deleted"}: deleted is null when the cache '
            "cannot count its keys (not Redis)",
        )

    def handle(self, *, action: str, json: bool, **options: Any) -> None:
        try:
            deleted = services.flush_cache()
        except services.JobError as exc:
            raise CommandError(str(exc)) from exc
        if json:
            write_json(self.stdout, {"flushed": True, "deleted": deleted})
            return
        if deleted is not None and options["verbosity"] > 1:
            self.stdout.write(f"{counted(deleted, 'key')} deleted")
        self.stdout.write(self.style.SUCCESS("✔ Cache flushed"))
