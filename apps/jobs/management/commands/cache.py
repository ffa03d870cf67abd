"""cache flush: clear the configured cache."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.core.output import counted
from apps.core.subcommands import add_subcommands
from apps.jobs import services


class Command(BaseCommand):
    help = "Clear the configured cache (on Redis, only the cache's own keys)."

    def add_arguments(self, parser) -> None:
        sub = add_subcommands(parser)
        sub.add_parser("flush", help="delete every cached value")

    def handle(self, *, action: str, **options: Any) -> None:
        try:
            deleted = services.flush_cache()
        except services.JobError as exc:
            raise CommandError(str(exc)) from exc
        if deleted is not None and options["verbosity"] > 1:
            self.stdout.write(f"{counted(deleted, 'key')} deleted")
        self.stdout.write(self.style.SUCCESS("✔ Cache flushed"))
