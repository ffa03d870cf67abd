import sys

from django.core.management.base import BaseCommand, CommandError

from apps.accounts import services
from apps.accounts.serializers import PurgeReportSerializer
from apps.core.output import add_noinput_argument, confirm, format_table, write_json


class Command(BaseCommand):
    help = (
        "Forget a user (the right to be forgotten): delete their private data, keep what "
        "others still see (chat messages) under an anonymous author, anonymise the "
        "account and refuse its tokens. One transaction."
    )
    stealth_options = ("stdin",)

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "user", nargs="?", help="username or email (or use --world and --uid)"
        )
        parser.add_argument("--world", help="the attendee's world id")
        parser.add_argument("--uid", help="the attendee's token uid")
        parser.add_argument(
            "--dry-run", action="store_true", help="list what would go; change nothing"
        )
        add_noinput_argument(parser)
        parser.add_argument(
            "--json",
            action="store_true",
            help="print the report as /api/v1/users/purge/ answers it; the plan and "
            "the confirmation question go to stderr",
        )

    def execute(self, *args, **options):
        self.stdin = options.get("stdin", sys.stdin)
        return super().execute(*args, **options)

    def handle(
        self,
        *,
        user: str | None,
        world: str | None,
        uid: str | None,
        dry_run: bool,
        interactive: bool,
        json: bool,
        **options,
    ) -> None:
        try:
            target = services.find_purge_target(user, world=world, uid=uid)
            plan = services.purge_user(target, dry_run=True)
        except services.AccountError as exc:
            raise CommandError(str(exc)) from exc
        if json and dry_run:
            write_json(
                self.stdout, PurgeReportSerializer(plan, context={"user": target}).data
            )
            return
        # With --json the plan is still shown before the question, on stderr (not in
        # red: style_func=str).
        shown = self.stderr if json else self.stdout
        if interactive or not json:
            shown.write(f"User {plan.label}:", style_func=str)
            table = format_table(["What", "Count", "Action"], plan.items)
            shown.write(table, style_func=str)
        if dry_run:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Dry run: nothing changed. Purging would mean {plan.summary()}."
                )
            )
            return
        if interactive and not confirm(
            "Purge this user? This cannot be undone.", self.stdin, shown
        ):
            raise CommandError("Not confirmed; nothing was purged.")
        try:
            report = services.purge_user(target)
        except services.AccountError as exc:
            raise CommandError(str(exc)) from exc
        if json:
            write_json(
                self.stdout,
                PurgeReportSerializer(report, context={"user": target}).data,
            )
            return
        self.stdout.write(
            self.style.SUCCESS(f"Purged user {report.label}: {report.summary()}.")
        )
