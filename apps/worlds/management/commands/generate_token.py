import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.core.output import write_json
from apps.worlds import services
from apps.worlds.serializers import TokenSerializer


def days(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= services.TOKEN_MAX_DAYS:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a whole number of days from 1 to "
            f"{services.TOKEN_MAX_DAYS} (ten years)"
        )
    return number


class Command(BaseCommand):
    help = (
        "Print a login link https://<domain>/#token=<JWT> for a world, signed with "
        "its first JWT secret."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("world", help="ID of the world")
        parser.add_argument(
            "--trait",
            action="append",
            default=[],
            dest="traits",
            help="a trait the token carries; repeat for several",
        )
        parser.add_argument(
            "--days", type=days, default=90, help="days of validity (90, at most 3650)"
        )
        parser.add_argument("--uid", help="the attendee's id (a new UUID if not given)")
        output = parser.add_mutually_exclusive_group()
        output.add_argument("--raw", action="store_true", help="print only the token")
        output.add_argument(
            "--json",
            action="store_true",
            help='print {"token", "url"} as the API answers (url null without a domain)',
        )

    def handle(
        self,
        *,
        world: str,
        traits: list[str],
        days: int,
        uid: str | None,
        raw: bool,
        json: bool,
        **options: Any,
    ) -> None:
        try:
            target = services.get_world(world)
        except services.WorldNotFound as exc:
            raise CommandError(
                f"No world {world!r}; list_worlds shows the IDs you can use."
            ) from exc
        if not (raw or json) and not target.domain:
            raise CommandError(
                f"World {world!r} has no domain, so there is no link to print; "
                "use --raw for the token alone, or set world.domain with import_config."
            )
        try:
            token = services.generate_token(target, traits, days=days, uid=uid)
        except services.WorldError as exc:
            raise CommandError(str(exc)) from exc
        if json:
            url = services.token_url(target, token) if target.domain else None
            write_json(self.stdout, TokenSerializer({"token": token, "url": url}).data)
            return
        self.stdout.write(token if raw else services.token_url(target, token))
