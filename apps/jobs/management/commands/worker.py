"""worker start|status: run a Celery worker, or see what waits in the queues."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.core.output import write_json, write_table
from apps.core.subcommands import add_subcommands
from apps.jobs import services


class Command(BaseCommand):
    help = (
        "Start a Celery worker for Stagehand, or show the tasks waiting in the queues."
    )

    def add_arguments(self, parser) -> None:
        sub = add_subcommands(parser)
        start = sub.add_parser(
            "start",
            help="start a worker; every further option goes to `celery worker`",
        )
        start.add_argument("celery_args", nargs="*", metavar="CELERY_OPTION")

        status = sub.add_parser("status", help="tasks waiting, per queue and task")
        status.add_argument(
            "-q",
            "--queue",
            action="append",
            dest="queues",
            help="a queue to read (repeatable); default: the workers' queues",
        )
        status.add_argument("-b", "--broker", help="broker URL (default: settings)")
        mode = status.add_mutually_exclusive_group()
        mode.add_argument("--munin", action="store_true", help="Munin plugin values")
        mode.add_argument(
            "--munin-config", action="store_true", help="Munin plugin config (needs -q)"
        )
        mode.add_argument("--json", action="store_true")

    def run_from_argv(self, argv: list[str]) -> None:
        # `worker start -c 4 --pool=solo`: celery's options are not ours to parse.
        if len(argv) > 2 and argv[2] == "start":
            argv = [*argv[:3], "--", *argv[3:]]
        super().run_from_argv(argv)

    def handle(self, *, action: str, **options: Any) -> None:
        try:
            getattr(self, "do_" + action)(**options)
        except services.JobError as exc:
            raise CommandError(str(exc)) from exc

    def do_start(self, *, celery_args: list[str], **_: Any) -> None:
        services.start_worker([a for a in celery_args if a != "--"])

    def do_status(
        self,
        *,
        queues: list[str] | None,
        broker: str | None,
        munin: bool,
        munin_config: bool,
        json: bool,
        **_: Any,
    ) -> None:
        if munin_config:
            if not queues or len(queues) != 1:
                raise CommandError(
                    "--munin-config needs exactly one queue: -q QUEUE (one Munin "
                    "graph per queue)."
                )
            self.stdout.write("\n".join(services.munin_config(queues[0])))
            return
        if munin and queues and len(queues) > 1:
            raise CommandError("--munin reads one queue: give a single -q QUEUE.")
        statuses = services.queue_status(queues, broker=broker)
        if munin:
            self.stdout.write("\n".join(services.munin_values(statuses[0])))
            return
        if json:
            write_json(self.stdout, [s.as_dict() for s in statuses])
            return
        rows = []
        for status in statuses:
            rows.append((status.queue, "(all)", status.waiting))
            if status.tasks is None:
                rows.append((status.queue, "(per task: Redis brokers only)", ""))
            else:
                rows += [(status.queue, t, n) for t, n in status.tasks.items()]
        write_table(self.stdout, ["queue", "task", "waiting"], rows)
        total = sum(s.waiting for s in statuses)
        self.stdout.write(
            self.style.SUCCESS(
                f"✔ {total} waiting task{'s' if total != 1 else ''} "
                f"in {len(statuses)} queue{'s' if len(statuses) != 1 else ''}"
            )
        )
