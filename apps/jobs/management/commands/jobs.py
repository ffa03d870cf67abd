"""jobs list|run|schedule|unschedule|scheduled|history: administrative jobs."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils.timezone import localtime

from apps.core.output import human_duration, write_json, write_table
from apps.core.subcommands import add_subcommands
from apps.jobs import services
from apps.jobs.registry import all_jobs
from apps.jobs.serializers import (
    JobRunSerializer,
    JobSerializer,
    ScheduledJobSerializer,
)


class Command(BaseCommand):
    help = "List, run, schedule and look back at administrative jobs."

    def add_arguments(self, parser) -> None:
        sub = add_subcommands(parser)

        listing = sub.add_parser("list", help="the jobs, with their descriptions")
        listing.add_argument("--json", action="store_true")

        run = sub.add_parser("run", help="run a job here, or on a worker with -d")
        run.add_argument("name")
        run.add_argument("params", nargs="*", metavar="ARG|KEY=VALUE")
        run.add_argument(
            "-d",
            "--delay",
            action="store_true",
            help="send the job to the workers and print its task id",
        )

        schedule = sub.add_parser("schedule", help="run a job on a crontab")
        schedule.add_argument("cron", help="'0 3 * * *' or @hourly/@daily/…")
        schedule.add_argument("name")
        schedule.add_argument("params", nargs="*", metavar="ARG|KEY=VALUE")

        unschedule = sub.add_parser("unschedule", help="remove a job's schedule")
        unschedule.add_argument("name")
        unschedule.add_argument("params", nargs="*", metavar="ARG|KEY=VALUE")
        unschedule.add_argument(
            "--dry-run",
            action="store_true",
            help="say which schedule would go; change nothing",
        )

        scheduled = sub.add_parser("scheduled", help="the scheduled jobs")
        scheduled.add_argument("--json", action="store_true")

        hist = sub.add_parser("history", help="the latest runs, newest first")
        hist.add_argument("name", nargs="?")
        hist.add_argument("--limit", type=int, default=20)
        hist.add_argument("--json", action="store_true")

    def handle(self, *, action: str, **options: Any) -> None:
        try:
            getattr(self, "do_" + action)(**options)
        except services.JobError as exc:
            raise CommandError(str(exc)) from exc

    def do_list(self, *, json: bool, **_: Any) -> None:
        jobs = all_jobs()
        if json:
            write_json(self.stdout, JobSerializer(jobs, many=True).data)
            return
        write_table(
            self.stdout, ["job", "description"], [(j.name, j.description) for j in jobs]
        )

    def do_run(self, *, name: str, params: list[str], delay: bool, **_: Any) -> None:
        args, kwargs = services.parse_params(params)
        label = services.call_label(name, args, kwargs)
        if delay:
            run = services.send(name, args, kwargs)
            self.stdout.write(run.task_id)
            self.stdout.write(
                self.style.SUCCESS(
                    f"✔ Sent Job {label} to the workers (task {run.task_id})"
                )
            )
            return
        outcome = services.run(name, args, kwargs)
        took = human_duration(outcome.run.duration or 0)
        if outcome.error is not None:
            raise CommandError(
                f"Job {label} failed after {took}: "
                f"{type(outcome.error).__name__}: {outcome.error}; "
                f"the traceback is in `jobs history {name}` (run #{outcome.run.pk})."
            )
        if outcome.result is not None:
            self.stdout.write(str(outcome.result))
        self.stdout.write(self.style.SUCCESS(f"✔ Job {label} done in {took}"))

    def do_schedule(self, *, cron: str, name: str, params: list[str], **_: Any) -> None:
        args, kwargs = services.parse_params(params)
        done = services.schedule(cron, name, args, kwargs)
        self.stdout.write(
            self.style.SUCCESS(
                f"➢ Scheduled Job {done.label} with the following crontab: {done.cron}"
            )
        )

    def do_unschedule(
        self, *, name: str, params: list[str], dry_run: bool, **_: Any
    ) -> None:
        args, kwargs = services.parse_params(params)
        done = services.unschedule(name, args, kwargs, dry_run=dry_run)
        if done is None:
            raise CommandError(
                f"✘ No scheduled job match Job {services.call_label(name, args, kwargs)}; "
                "`jobs scheduled` lists them with their parameters.",
                returncode=2,
            )
        if dry_run:
            self.stdout.write(
                f"Would unschedule Job {done.label} with the following crontab: "
                f"{done.cron}"
            )
            self.stdout.write(self.style.SUCCESS("Dry run: nothing was changed."))
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"➢ Unscheduled Job {done.label} with the following crontab: {done.cron}"
            )
        )

    def do_scheduled(self, *, json: bool, **_: Any) -> None:
        rows = services.scheduled()
        notes = services.schedule_notes()
        if json:
            write_json(self.stdout, ScheduledJobSerializer(rows, many=True).data)
            # Beside the JSON, not in it: the document stays a list of schedules.
            for note in notes:
                self.stderr.write(f"note: {note}")
            return
        if not rows:
            self.stdout.write("# No scheduled jobs")
        for row in rows:
            off = "" if row["enabled"] else "  (disabled)"
            description = (row["description"] or row["task"]).rstrip(".")
            self.stdout.write(f"{description}: {row['label']} ↦ {row['cron']}{off}")
        for note in notes:
            self.stdout.write(f"note: {note}")

    def do_history(self, *, name: str | None, limit: int, json: bool, **_: Any) -> None:
        if limit < 1:
            raise CommandError("--limit must be at least 1.")
        runs = services.history(name, limit=limit)
        if json:
            write_json(self.stdout, JobRunSerializer(runs, many=True).data)
            return
        if not runs:
            self.stdout.write(
                "# No job runs recorded" + (f" for {name}" if name else "")
            )
            return
        write_table(
            self.stdout,
            ["id", "job", "trigger", "started", "duration", "outcome", "task", "error"],
            [
                (
                    r.pk,
                    services.call_label(r.job, r.args, r.kwargs),
                    r.trigger,
                    localtime(r.started_at).strftime("%Y-%m-%d %H:%M:%S")
                    if r.started_at
                    else "-",
                    human_duration(r.duration) if r.duration is not None else "-",
                    r.outcome,
                    r.task_id or "-",
                    _last_line(r.error),
                )
                for r in runs
            ],
        )


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:120] if lines else ""
