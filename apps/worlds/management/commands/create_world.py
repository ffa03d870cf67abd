from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.worlds import services

from ._world_options import add_world_options, world_values


class Command(BaseCommand):
    help = (
        "Create a world with default roles and a fresh JWT secret. Asks for its ID, "
        "title and domain unless given with --noinput."
    )
    stealth_options = ("stdin",)

    def add_arguments(self, parser: Any) -> None:
        add_world_options(parser)

    def handle(self, **options: Any) -> None:
        values = world_values(self, options)
        try:
            world = services.create_world(
                values["world_id"], values["title"], values["domain"]
            )
        except services.WorldError as exc:
            raise CommandError(str(exc)) from exc
        # The only place a secret is ever printed: the operator needs it for the
        # ticket system that signs attendee tokens.
        self.stdout.write(f"Default API keys: {world.config['JWT_secrets']}")
        self.stdout.write(self.style.SUCCESS("World created."))
