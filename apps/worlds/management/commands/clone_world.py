from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.core.output import write_json
from apps.worlds import services
from apps.worlds.serializers import WorldDetailSerializer

from ._world_options import add_world_options, world_values


class Command(BaseCommand):
    help = (
        "Create a new world with SOURCE's config, roles, trait grants, locale, time "
        "zone and rooms; no users and no user content are copied."
    )
    stealth_options = ("stdin",)

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("source", help="ID of the world to copy")
        add_world_options(parser)
        parser.add_argument(
            "--new-secrets",
            action="store_true",
            help="give the clone a fresh JWT secret instead of SOURCE's secrets",
        )

    def handle(
        self, *, source: str, new_secrets: bool, json: bool, **options: Any
    ) -> None:
        try:
            source_world = services.get_world(source)
        except services.WorldNotFound as exc:
            raise CommandError(
                f"No world {source!r}; list_worlds shows the IDs you can clone."
            ) from exc
        values = world_values(self, options, json=json)
        try:
            clone = services.clone_world(
                source_world,
                values["world_id"],
                values["title"],
                values["domain"],
                new_secrets=new_secrets,
            )
        except services.WorldError as exc:
            raise CommandError(str(exc)) from exc
        if json:
            # As the API's clone answers: no secret (none is printed without --json).
            write_json(self.stdout, WorldDetailSerializer(clone).data)
            return
        self.stdout.write(self.style.SUCCESS("World cloned."))
