from django.core.management.base import BaseCommand, CommandError

from apps.core.output import write_json, write_table
from apps.ops.services import collect_info


class Command(BaseCommand):
    help = (
        "Show versions, configuration and whether each configured component answers. "
        "Exits non-zero when one does not, so it can serve as a health check."
    )

    # Report an unreachable database as an unavailable row instead of dying in the checks.
    requires_system_checks: list = []

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--json", action="store_true", help="print JSON for scripts"
        )

    def handle(self, *, json: bool, **options) -> None:
        info = collect_info()
        if json:
            write_json(self.stdout, info)
        else:
            versions = info["versions"]
            db = info["database"]
            write_table(
                self.stdout,
                ["Setting", "Value"],
                [
                    *[
                        (name.capitalize(), version)
                        for name, version in versions.items()
                    ],
                    ("Settings module", info["settings_module"]),
                    ("Deploy label", info["deploy_label"]),
                    ("Database", f"{db['engine']} host={db['host']} name={db['name']}"),
                ],
            )
            self.stdout.write("")
            write_table(
                self.stdout,
                ["Component", "Backend", "Status", "Detail"],
                [
                    (
                        c["name"],
                        c["backend"],
                        c["status"],
                        c["detail"],
                    )
                    for c in info["components"]
                ],
            )
        failed = [c["name"] for c in info["components"] if not c["ok"]]
        if failed:
            raise CommandError(
                f"{', '.join(failed)} did not answer; check the settings shown above "
                "and that the service is running.",
                returncode=2,
            )
        if not json:
            self.stdout.write(self.style.SUCCESS("All configured components answer."))
