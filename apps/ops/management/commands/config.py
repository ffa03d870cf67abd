from django.core.management.base import BaseCommand

from apps.core.environment import FILE, configuration
from apps.core.output import write_json, write_table


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


class Command(BaseCommand):
    help = (
        "List every environment variable the settings read, in reading order, with "
        "its effective value (secrets masked) and where it came from: the "
        "environment, the file <NAME>_FILE names, or the default."
    )

    # Show the configuration even when it would fail the system checks.
    requires_system_checks: list = []

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--json", action="store_true", help="print JSON for scripts"
        )
        parser.add_argument(
            "--show-secrets",
            action="store_true",
            help="print secrets (keys, passwords) in clear instead of ***",
        )

    def handle(self, *, json: bool, show_secrets: bool, **options) -> None:
        variables = configuration(show_secrets=show_secrets)
        if json:
            write_json(self.stdout, variables)
            return
        write_table(
            self.stdout,
            ["Variable", "Value", "Source"],
            [
                (
                    v["name"],
                    _text(v["value"]),
                    f"file {v['file']}" if v["source"] == FILE else v["source"],
                )
                for v in variables
            ],
        )
