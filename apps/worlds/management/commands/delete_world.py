from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.core.output import counted, write_json
from apps.worlds import services


class Command(BaseCommand):
    help = (
        "Soft-delete a world: it disappears at once and the purge job removes it, "
        "its rooms and attendees later."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("world", help="ID of the world")
        parser.add_argument(
            "--dry-run", action="store_true", help="show what would go; change nothing"
        )
        parser.add_argument(
            "--json", action="store_true", help="print JSON for scripts"
        )

    def handle(self, *, world: str, dry_run: bool, json: bool, **options: Any) -> None:
        try:
            target = services.get_world(world)
        except services.WorldNotFound as exc:
            raise CommandError(
                f"No world {world!r}; list_worlds shows the IDs you can delete "
                "(soft-deleted ones are already gone)."
            ) from exc
        counts = (
            services.deletion_counts(target)
            if dry_run
            else services.delete_world(target)
        )
        if json:
            write_json(
                self.stdout,
                {
                    "world": target.id,
                    "title": target.title,
                    "dry_run": dry_run,
                    "deleted": not dry_run,
                    "rooms": counts["rooms"],
                    "attendees": counts["attendees"],
                },
            )
            return
        summary = (
            f"world {target.id!r} ({target.title}): {counted(counts['rooms'], 'room')}, "
            f"{counted(counts['attendees'], 'attendee')}"
        )
        if dry_run:
            self.stdout.write(f"Would delete {summary}.")
            self.stdout.write(self.style.SUCCESS("Dry run: nothing was changed."))
        else:
            self.stdout.write(
                f"Deleted {summary}; the purge job removes them for good."
            )
            self.stdout.write(self.style.SUCCESS(f"World {target.id!r} deleted."))
