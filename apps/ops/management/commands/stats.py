from django.core.management.base import BaseCommand, CommandError

from apps.core.output import write_json, write_table
from apps.ops.serializers import ComponentSerializer
from apps.ops.services import collect_stats


class Command(BaseCommand):
    help = (
        "One line per component of the backend: processes, Celery workers, queues, "
        "Beat, connections, database, cache, channel layer, broker, storage; each "
        "`ok`, `unavailable` or `not configured`, with its figures. Exits 2 when one is unavailable."
    )

    requires_system_checks: list = []

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *, json: bool, **options) -> None:
        components = collect_stats()
        if json:
            write_json(self.stdout, ComponentSerializer(components, many=True).data)
        else:
            write_table(
                self.stdout,
                ["Component", "Status", "Backend", "Detail"],
                [
                    (
                        c.name,
                        c.status,
                        c.backend,
                        c.detail,
                    )
                    for c in components
                ],
            )
        down = [c.name for c in components if not c.ok]
        if down:
            raise CommandError(
                f"unavailable: {', '.join(down)}; see the detail column, and "
                "`backend processes` or `info` for more.",
                returncode=2,
            )
        if not json:
            self.stdout.write(self.style.SUCCESS("Every component is ok."))
