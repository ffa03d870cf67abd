import json
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.worlds import services


class Command(BaseCommand):
    help = (
        "Print a world's config in the world-config format (what import_config reads), "
        "or write it to a file with -o. It contains the world's JWT secrets."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("world", help="ID of the world")
        parser.add_argument(
            "-o", "--output", help="write to this file instead of stdout"
        )

    def handle(self, *, world: str, output: str | None, **options: Any) -> None:
        try:
            data = services.export_config(services.get_world(world))
        except services.WorldNotFound as exc:
            raise CommandError(
                f"No world {world!r}; list_worlds shows the IDs you can export."
            ) from exc
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        if not output:
            self.stdout.write(text, ending="")
            return
        try:
            # The file holds the JWT secrets: readable by its owner only.
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(fd, 0o600)  # also when overwriting an existing file
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            raise CommandError(
                f"Cannot write {output}: {exc.strerror}; choose a writable path."
            ) from exc
        self.stdout.write(self.style.SUCCESS(f"World {world!r} exported to {output}."))
