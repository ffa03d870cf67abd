import argparse
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.core.output import (
    counted,
    human_duration,
    human_size,
    write_json,
    write_table,
)
from apps.core.subcommands import add_subcommands
from apps.ops import backend


class Command(BaseCommand):
    help = (
        "Run the whole backend (ASGI server, Celery workers, Celery Beat) as supervised "
        "child processes, list them, stop or kill them. Acts only on the processes "
        "recorded in this project's run directory (<STAGEHAND_VAR_DIR>/run/)."
    )

    requires_system_checks: list = []

    def add_arguments(self, parser) -> None:
        sub = add_subcommands(parser)

        start = sub.add_parser(
            "start", help="start server, workers and beat, and supervise them"
        )
        start.add_argument(
            "--workers", type=int, default=1, help="Celery workers (default 1)"
        )
        start.add_argument(
            "--concurrency", type=int, help="pool processes per worker (Celery default)"
        )
        start.add_argument(
            "--disable-beat", action="store_true", help="do not start Celery Beat"
        )
        start.add_argument(
            "--bind", default="127.0.0.1:8000", help="server address HOST:PORT"
        )
        start.add_argument(
            "--skip-cleanup",
            action="store_true",
            help="do not stop processes left over from an earlier start",
        )
        start.add_argument(
            "--detach",
            action="store_true",
            help="supervise in the background; log in <var>/log/backend.log",
        )
        # The detached supervisor's own log, which it rotates (start --detach).
        start.add_argument("--log-file", help=argparse.SUPPRESS)
        start.add_argument(
            "--stop-timeout",
            type=float,
            default=10.0,
            help="seconds each child gets to stop before it is killed (default 10)",
        )

        processes = sub.add_parser(
            "processes", help="this project's backend processes, checked against /proc"
        )
        processes.add_argument("--json", action="store_true", help="print JSON")

        stop = sub.add_parser("stop", help="SIGTERM every recorded process and wait")
        stop.add_argument(
            "--timeout",
            type=float,
            default=30.0,
            help="seconds to wait before giving up (default 30)",
        )
        stop.add_argument("--json", action="store_true", help="print JSON")

        kill = sub.add_parser("kill", help="SIGKILL every recorded process")
        kill.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *, action: str, **options) -> None:
        try:
            getattr(self, f"handle_{action}")(**options)
        except backend.BackendError as exc:
            raise CommandError(str(exc)) from exc

    # ----------------------------------------------------------------- start

    def handle_start(
        self,
        *,
        workers: int,
        concurrency: int | None,
        disable_beat: bool,
        bind: str,
        skip_cleanup: bool,
        detach: bool,
        stop_timeout: float,
        log_file: str | None,
        **options,
    ) -> None:
        if workers < 0:
            raise CommandError("--workers must be 0 or more.")
        specs, note = backend.plan_backend(
            workers=workers, bind=bind, beat=not disable_beat, concurrency=concurrency
        )
        if note:
            self.stdout.write(note)
        if not skip_cleanup:
            self.report_outcomes(
                backend.stop_backend(timeout=stop_timeout + 5),
                "left over from an earlier start",
                kill_hint=True,
            )
        if detach:
            argv = ["--workers", str(workers), "--bind", bind]
            argv += ["--stop-timeout", str(stop_timeout)]
            if concurrency:
                argv += ["--concurrency", str(concurrency)]
            if disable_beat:
                argv.append("--disable-beat")
            record, log = backend.start_detached(argv)
            self.handle_processes(json=False)
            self.stdout.write(
                self.style.SUCCESS(
                    f"Backend running in the background (supervisor PID {record.pid}, "
                    f"log {log}); stop it with: manage.py backend stop"
                )
            )
            return
        report = self.stdout.write
        if log_file:
            log = backend.RotatingLog(Path(log_file), follow_fds=(1, 2))

            def report(line: str) -> None:
                self.stdout.flush()
                log.write(line + "\n")

        supervisor = backend.Supervisor(specs, report=report, stop_timeout=stop_timeout)
        self.stdout.write(
            f"Supervising {counted(len(specs), 'process', 'processes')}; Ctrl-C or SIGTERM stops them all."
        )
        supervisor.run()
        self.stdout.write(self.style.SUCCESS("Backend stopped."))

    # ----------------------------------------------------------------- processes

    def handle_processes(self, *, json: bool, **options) -> None:
        states = backend.inspect_processes()
        if json:
            write_json(self.stdout, [s.as_dict() for s in states])
            return
        if not states:
            self.stdout.write(
                f"No backend processes recorded in {backend.run_dir()}; "
                "start them with: manage.py backend start"
            )
            return
        write_table(
            self.stdout,
            ["PID", "Name", "Role", "Status", "Uptime", "Memory", "Restarts"],
            [
                (
                    s.record.pid,
                    s.record.name,
                    s.record.role,
                    s.status,
                    human_duration(s.uptime) if s.alive else "-",
                    human_size(s.rss) if s.alive else "-",
                    s.record.restarts,
                )
                for s in states
            ],
        )
        stale = [s for s in states if not s.alive]
        if stale:
            self.stderr.write(
                f"{counted(len(stale), 'stale record')}: not running any more; "
                "`backend stop` or `backend start` removes them."
            )

    # ----------------------------------------------------------------- stop/kill

    def handle_stop(self, *, timeout: float, json: bool, **options) -> None:
        outcomes = backend.stop_backend(timeout=timeout)
        if json:
            write_json(self.stdout, [o.as_dict() for o in outcomes])
        running = [o for o in outcomes if o.result == "running"]
        if running:
            if not json:
                self.report_outcomes(outcomes, "")
            raise CommandError(
                f"{counted(len(running), 'process', 'processes')} still running after {timeout:g} s; "
                "wait longer with --timeout or force them with: manage.py backend kill"
            )
        if not json:
            self.report_outcomes(outcomes, "")
            self.stdout.write(self.style.SUCCESS("Backend stopped."))

    def handle_kill(self, *, json: bool, **options) -> None:
        outcomes = backend.kill_backend()
        if json:
            write_json(self.stdout, [o.as_dict() for o in outcomes])
        else:
            self.report_outcomes(outcomes, "")
        running = [o for o in outcomes if o.result == "running"]
        if running:
            raise CommandError(
                f"{counted(len(running), 'process', 'processes')} survived SIGKILL; check them with "
                "`backend processes` (a process stuck in the kernel cannot be killed)."
            )
        if not json:
            self.stdout.write(self.style.SUCCESS("Backend killed."))

    def report_outcomes(self, outcomes, context: str, kill_hint: bool = False) -> None:
        if not outcomes:
            if not context:
                self.stdout.write("No backend processes recorded.")
            return
        for o in outcomes:
            what = {
                "stale": "was already gone (stale record removed)",
                "running": "is still running",
            }.get(o.result, o.result)
            suffix = f" ({context})" if context else ""
            self.stdout.write(f"{o.name} (PID {o.pid}) {what}{suffix}")
        if kill_hint and any(o.result == "running" for o in outcomes):
            raise CommandError(
                "processes of an earlier start did not stop; "
                "run `manage.py backend kill`, or start with --skip-cleanup"
            )
