from django.core.management.base import BaseCommand, CommandError

from apps.accounts import services
from apps.accounts.serializers import UserSerializer
from apps.core.output import write_json


class Command(BaseCommand):
    help = "Give a user staff and superuser rights, or remove them with --revoke."

    def add_arguments(self, parser) -> None:
        parser.add_argument("email", help="the user's email (or username)")
        parser.add_argument(
            "--revoke", action="store_true", help="remove the rights instead"
        )
        parser.add_argument(
            "--json", action="store_true", help="print the user as JSON for scripts"
        )

    def handle(self, *, email: str, revoke: bool, json: bool, **options) -> None:
        try:
            user = services.set_admin(email, revoke=revoke)
        except services.AccountError as exc:
            raise CommandError(str(exc)) from exc
        if json:
            write_json(self.stdout, UserSerializer(user).data)
            return
        who = user.email or user.username
        if revoke:
            message = f"{who} is no longer an admin."
        else:
            message = f"{who} is now an admin (staff and superuser)."
        self.stdout.write(self.style.SUCCESS(message))
