"""api_token create|revoke|list: the tokens of the management API (staff only)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils.timezone import localtime

from apps.accounts import api_tokens
from apps.accounts.serializers import ApiTokenSerializer
from apps.core.output import counted, write_json, write_table
from apps.core.subcommands import add_subcommands


class Command(BaseCommand):
    help = (
        "Create, revoke or list the API tokens of staff users "
        "(`Authorization: Token <key>` on /api/v1/)."
    )

    def add_arguments(self, parser) -> None:
        sub = add_subcommands(parser)
        create = sub.add_parser(
            "create", help="create a staff user's token and print its key once"
        )
        create.add_argument("email", help="the user's email (or username)")
        create.add_argument("--json", action="store_true")
        revoke = sub.add_parser("revoke", help="delete a user's token")
        revoke.add_argument("email", help="the user's email (or username)")
        revoke.add_argument("--json", action="store_true")
        listing = sub.add_parser("list", help="who has a token (never the keys)")
        listing.add_argument("email", nargs="?", help="only this user's token")
        listing.add_argument("--json", action="store_true")

    def handle(self, *, action: str, email: str | None, json: bool, **_: Any) -> None:
        try:
            getattr(self, "do_" + action)(email, json=json)
        except api_tokens.AccountError as exc:
            raise CommandError(str(exc)) from exc

    def do_create(self, email: str, *, json: bool) -> None:
        token = api_tokens.create_token(email)
        if json:
            write_json(
                self.stdout, {**ApiTokenSerializer(token).data, "key": token.key}
            )
            return
        self.stdout.write(token.key)
        self.stderr.write(
            f"This is the API token of {token.user.email or token.user.username}; it "
            "is shown only now. Send it as `Authorization: Token <key>`."
        )

    def do_revoke(self, email: str, *, json: bool) -> None:
        user = api_tokens.revoke_token(email)
        who = user.email or user.username
        if json:
            write_json(self.stdout, {"email": user.email, "revoked": True})
            return
        self.stdout.write(self.style.SUCCESS(f"Revoked the API token of {who}."))

    def do_list(self, email: str | None, *, json: bool) -> None:
        tokens = api_tokens.list_tokens(email)
        if json:
            write_json(self.stdout, ApiTokenSerializer(tokens, many=True).data)
            return
        write_table(
            self.stdout,
            ["Email", "Username", "Staff", "Created"],
            [
                (
                    t.user.email,
                    t.user.username,
                    "yes" if t.user.is_staff else "no",
                    localtime(t.created).isoformat(timespec="seconds"),
                )
                for t in tokens
            ],
        )
        self.stdout.write(counted(len(tokens), "token") + ".")
