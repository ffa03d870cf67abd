import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.core.output import counted
from apps.worlds import services


class Command(BaseCommand):
    help = (
        "Create or update a world from a world-config JSON file (the venueless "
        "format), all or nothing."
    )
    stealth_options = ("stdin",)

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("file", help="path of the JSON file, or - for stdin")

    def handle(self, *, file: str, **options: Any) -> None:
        if file == "-":
            text = (options.get("stdin") or sys.stdin).read()
        else:
            try:
                text = Path(file).read_bytes()
            except OSError as exc:
                raise CommandError(
                    f"Cannot read {file}: {exc.strerror}; give the path of a "
                    "world-config JSON file."
                ) from exc
        try:
            result = services.import_config(services.parse_config(text))
        except services.ConfigError as exc:
            lines = "\n".join(f"  {path}: {message}" for path, message in exc.problems)
            raise CommandError(
                f"{'stdin' if file == '-' else file} is not a valid world config "
                f"({counted(len(exc.problems), 'problem')}):\n{lines}\n"
                "Nothing was imported; fix these and run import_config again."
            ) from exc
        except services.WorldError as exc:
            raise CommandError(f"{exc} Nothing was imported.") from exc
        world = result.world
        self.stdout.write(
            f"Rooms: {result.rooms_created} created, {result.rooms_updated} updated, "
            f"{result.rooms_deleted} removed."
        )
        verb = "created" if result.created else "updated"
        self.stdout.write(self.style.SUCCESS(f"World {world.id!r} {verb}."))
