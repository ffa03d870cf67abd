import signal
import threading
import time
from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError

from apps.ops.services import UNAVAILABLE, collect_stats


class Command(BaseCommand):
    help = (
        "Check every component each --interval-s seconds and print a line whenever "
        "one changes status (ok, unavailable, not configured), until interrupted "
        "(Ctrl-C, SIGTERM) or --count rounds. Exits 0 when nothing ended unavailable, "
        "2 otherwise."
    )

    requires_system_checks: list = []

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--interval-s",
            "--interval",
            dest="interval",
            type=float,
            default=5.0,
            metavar="SECONDS",
            help="seconds between rounds (default 5; --interval is the same option)",
        )
        parser.add_argument(
            "--count",
            type=int,
            default=0,
            help="stop after this many rounds (default: until interrupted)",
        )

    def handle(self, *, interval: float, count: int, **options) -> None:
        if interval <= 0:
            raise CommandError("--interval-s must be more than 0 seconds.")
        self.shutdown = False
        self.last: dict[str, str] = {}
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, self.on_signal)
        try:
            rounds = 0
            while not self.shutdown:
                self.check_once()
                rounds += 1
                if count and rounds >= count:
                    break
                self.pause(interval)
        finally:
            # call_command() may run us inside a longer-lived process (tests).
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        down = sorted(
            name for name, status in self.last.items() if status == UNAVAILABLE
        )
        if down:
            raise CommandError(
                f"ended with unavailable: {', '.join(down)}", returncode=2
            )
        self.stdout.write(self.style.SUCCESS("Ended with every component ok."))

    def on_signal(self, signum: int, frame: object) -> None:
        self.shutdown = True

    def pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.shutdown and time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def check_once(self) -> bool:
        """Check every component; print the ones whose status changed. Return whether
        any did."""
        changed = False
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        # A database check that fails drops its connection (check_database), so a
        # restore or a server restart is followed by "ok" again, not by errors forever.
        for component in collect_stats():
            status = component.status
            if self.last.get(component.name) == status:
                continue
            changed = True
            was = self.last.get(component.name)
            self.last[component.name] = status
            transition = f" (was {was})" if was else ""
            line = f"{now}  {component.name:<13} {status:<14}  {component.detail}"
            self.stdout.write(line.rstrip() + transition)
        return changed
