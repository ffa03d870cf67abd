from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.core.output import write_json
from apps.worlds import services
from apps.worlds.serializers import WorldDetailSerializer

from ._world_options import add_world_options, world_values


class Command(BaseCommand):
    help = (
        "Create a world with default roles and a fresh JWT secret. Asks for its ID, "
        "title and domain unless given with --noinput."
    )
    stealth_options = ("stdin",)

    def add_arguments(self, parser: Any) -> None:
        add_world_options(parser)

    def handle(self, *, json: bool, **options: Any) -> None:
        values = world_values(self, options, json=json)
        try:
            world = services.create_world(
                values["world_id"], values["title"], values["domain"]
            )
        except services.WorldError as exc:
            raise CommandError(str(exc)) from exc
        # The only place a secret is ever printed: the operator needs it for the
        # ticket system that signs attendee tokens. In JSON: the world as the API
        # answers it (secrets redacted in "config"), and the same keys beside it.
        if json:
            data = WorldDetailSerializer(world).data
            write_json(
                self.stdout, {**data, "JWT_secrets": world.config["JWT_secrets"]}
            )
            return
        self.stdout.write(f"Default API keys: {world.config['JWT_secrets']}")
        self.stdout.write(self.style.SUCCESS("World created."))
