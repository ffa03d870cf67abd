import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.core.output import counted, write_json
from apps.worlds import services


class Command(BaseCommand):
    help = (
        "Create or update a world from a world-config JSON file (the venueless "
        "format), all or nothing."
    )
    stealth_options = ("stdin",)

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("file", help="path of the JSON file, or - for stdin")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="check the file and show what would change, with the rooms that "
            "would be soft-deleted; change nothing",
        )
        parser.add_argument(
            "--json", action="store_true", help="print JSON for scripts"
        )

    def handle(self, *, file: str, dry_run: bool, json: bool, **options: Any) -> None:
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
            result = services.import_config(
                services.parse_config(text), dry_run=dry_run
            )
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
        if json:
            write_json(
                self.stdout,
                {
                    "world": world.id,
                    "created": result.created,
                    "dry_run": dry_run,
                    "rooms": {
                        "created": result.rooms_created,
                        "updated": result.rooms_updated,
                        "removed": result.rooms_deleted,
                    },
                    "removed_rooms": [
                        {"id": room_id, "name": name}
                        for room_id, name in result.deleted_rooms
                    ],
                },
            )
            return
        would = "would be " if dry_run else ""
        self.stdout.write(
            f"Rooms: {result.rooms_created} {would}created, "
            f"{result.rooms_updated} {would}updated, "
            f"{result.rooms_deleted} {would}removed."
        )
        for room_id, name in result.deleted_rooms:
            self.stdout.write(
                f"  {'would remove' if dry_run else 'removed'} room {room_id!r} "
                f"({name}): absent from the file; soft-deleted, the purge job "
                "removes it later"
            )
        if dry_run:
            verb = "would be created" if result.created else "would be updated"
            self.stdout.write(
                self.style.SUCCESS(
                    f"Dry run: world {world.id!r} {verb}; nothing was changed."
                )
            )
            return
        verb = "created" if result.created else "updated"
        self.stdout.write(self.style.SUCCESS(f"World {world.id!r} {verb}."))
