"""worker start|status: run a Celery worker, or see what waits in the queues."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.core.output import counted, write_json, write_table
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
        mode.add_argument(
            "--munin",
            action="store_true",
            help="Munin plugin values (U for each when the broker does not answer)",
        )
        mode.add_argument(
            "--munin-config",
            action="store_true",
            help="Munin plugin config: one queue's tasks with -q, else every queue",
        )
        mode.add_argument(
            "--munin-autoconf",
            action="store_true",
            help="Munin autoconf: `yes`, or `no (why)`",
        )
        mode.add_argument("--json", action="store_true")
        status.add_argument(
            "--warning",
            type=int,
            default=services.MUNIN_WARNING,
            metavar="N",
            help="Munin warns at more than N waiting tasks (default %(default)s)",
        )
        status.add_argument(
            "--critical",
            type=int,
            default=services.MUNIN_CRITICAL,
            metavar="N",
            help="Munin's critical level (default %(default)s)",
        )

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
        munin_autoconf: bool,
        json: bool,
        warning: int,
        critical: int,
        **_: Any,
    ) -> None:
        if munin_config:
            if not 0 <= warning <= critical:
                raise CommandError(
                    f"--warning {warning} and --critical {critical}: give "
                    "0 <= warning <= critical."
                )
            config = services.munin_config(queues, warning=warning, critical=critical)
            self.stdout.write("\n".join(config))
            return
        if munin_autoconf:
            # Munin's protocol: the answer is on stdout, and the exit status is 0.
            self.stdout.write(services.munin_autoconf(broker))
            return
        if munin:
            try:
                statuses = services.queue_status(queues, broker=broker)
            except services.JobError:
                statuses = None  # Munin wants U (unknown) and exit 0, not an error
            self.stdout.write("\n".join(services.munin_values(statuses, queues)))
            return
        statuses = services.queue_status(queues, broker=broker)
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
                f"✔ {counted(total, 'waiting task')} "
                f"in {counted(len(statuses), 'queue')}"
            )
        )
