"""Run the whole backend from one command: the ASGI server, Celery workers and Beat.

``backend start`` runs a *supervisor* (this process) that starts each part as a child
process in its own session, records it in the run directory (``<VAR_DIR>/run/``) and
restarts it with back-off when it dies. ``backend processes|stop|kill`` work from those
records only, never by process name, so they can only touch this project's processes.

A record holds the PID *and* the process start time read from ``/proc/<pid>/stat``: a
PID that the kernel has since handed to another process has a different start time, so
the record is reported as stale instead of being trusted (and signalled).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from django.conf import settings

from apps.core import logs
from apps.core.output import human_duration

Report = Callable[[str], None]

# Restart back-off: 1, 2, 4, … seconds, at most MAX_BACKOFF; a child that ran for
# BACKOFF_RESET seconds before dying starts again from the first step.
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0
BACKOFF_RESET = 60.0
# Seconds a stopped child's remaining output may take to reach its log.
PUMP_DRAIN_TIMEOUT = 5.0


class BackendError(Exception):
    """Raised when the backend cannot be started or stopped; the message says why."""


# --------------------------------------------------------------------------- /proc


def _clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def read_stat(pid: int) -> dict | None:
    """Return state, parent PID, process group, start time (clock ticks since boot)
    and the CPU time used (clock ticks: its own, and its waited-for children's) of
    ``pid`` from ``/proc/<pid>/stat``; None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after it.
    fields = raw[raw.rindex(")") + 2 :].split()
    return {
        "state": fields[0],
        "ppid": int(fields[1]),
        "pgrp": int(fields[2]),
        "start_ticks": int(fields[19]),
        "cpu_ticks": int(fields[11]) + int(fields[12]),  # utime + stime
        "children_cpu_ticks": int(fields[13]) + int(fields[14]),  # cutime + cstime
    }


def process_start_ticks(pid: int) -> int | None:
    stat = read_stat(pid)
    return stat["start_ticks"] if stat else None


def _system_uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def _rss_bytes(pid: int) -> int:
    try:
        resident_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return 0
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def descendants(pid: int, skip: Iterable[int] = ()) -> list[int]:
    """Return the PIDs of every live descendant of ``pid`` (Celery's pool processes),
    leaving out the subtrees of the PIDs in ``skip``."""
    skip = set(skip)
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat:
                children.setdefault(stat["ppid"], []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child in skip:
                continue
            found.append(child)
            todo.append(child)
    return found


# --------------------------------------------------------------------------- records


def run_dir() -> Path:
    return Path(settings.VAR_DIR) / "run"


def log_dir() -> Path:
    return Path(settings.VAR_DIR) / "log"


# --------------------------------------------------------------------------- logs

# A child's line longer than this is written in pieces (a log never holds one
# unbounded line in memory).
MAX_LINE = 64 * 1024


class RotatingLog:
    """A log file rotated by size with the standard library's RotatingFileHandler:
    ``name.log`` grows to BACKEND_LOG_MAX_BYTES, then becomes ``name.log.1`` (the
    oldest of BACKEND_LOG_BACKUPS is removed). A size of 0 never rotates.

    ``follow_fds`` are file descriptors (the detached supervisor's stdout and stderr)
    kept pointing at the current file, so that whatever else is written to them is
    in the log too.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int | None = None,
        backups: int | None = None,
        follow_fds: tuple[int, ...] = (),
    ):
        self.path = path
        self.handler = logging.handlers.RotatingFileHandler(
            path,
            maxBytes=settings.BACKEND_LOG_MAX_BYTES if max_bytes is None else max_bytes,
            backupCount=settings.BACKEND_LOG_BACKUPS if backups is None else backups,
            encoding="utf-8",
        )
        self.handler.terminator = ""  # lines come with their own newline
        self.handler.setFormatter(logging.Formatter("%(message)s"))
        self.follow_fds = follow_fds
        self._followed = None
        self._follow()

    def write(self, text: str) -> None:
        # A record without arguments: the text is written as it is, % and all.
        self.handler.handle(logging.makeLogRecord({"msg": text}))
        self._follow()

    def _follow(self) -> None:
        if not self.follow_fds:
            return
        if self.handler.stream is None:
            self.handler.stream = self.handler._open()
        if self.handler.stream is not self._followed:
            for fd in self.follow_fds:
                os.dup2(self.handler.stream.fileno(), fd)
            self._followed = self.handler.stream

    def close(self) -> None:
        self.handler.close()


def pump(stream: IO[bytes], log: RotatingLog, source: str, pid: int) -> None:
    """Copy a child's output into its log, line by line, until every process
    holding the pipe (the child and its pool processes) has closed it.

    With LOG_FORMAT=json, a line the child wrote outside logging (Celery's warnings
    printed before its logging starts, a crash's traceback) becomes a JSON record of
    the logger ``<name>.output``: the file stays one JSON object per line.
    """
    as_json = logs.json_formatter() if settings.LOG_FORMAT == "json" else None
    with stream:
        for line in iter(lambda: stream.readline(MAX_LINE), b""):
            text = line.decode("utf-8", errors="replace")
            if as_json and not text.startswith("{"):
                record = logs.output_record(text.rstrip("\n"), source, pid)
                text = as_json.format(record) + "\n"
            log.write(text)


@dataclass
class ProcessRecord:
    """One process of this project's backend, as written to the run directory."""

    name: str  # server, worker-1, beat, supervisor
    role: str  # server, worker, beat, supervisor
    pid: int
    start_ticks: int
    started: str  # ISO 8601, UTC
    command: list[str]
    restarts: int = 0

    @property
    def path(self) -> Path:
        return run_dir() / f"{self.name}.{self.pid}.json"

    def write(self) -> None:
        run_dir().mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2))
        temporary.replace(self.path)  # readers never see half a record

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    @classmethod
    def for_pid(
        cls, name: str, role: str, pid: int, command: list[str], restarts: int = 0
    ) -> ProcessRecord:
        return cls(
            name=name,
            role=role,
            pid=pid,
            start_ticks=process_start_ticks(pid) or 0,
            started=datetime.now(UTC).isoformat(timespec="seconds"),
            command=command,
            restarts=restarts,
        )


def read_records() -> list[ProcessRecord]:
    """Return every record in the run directory; unreadable files are removed."""
    records = []
    for path in sorted(run_dir().glob("*.json")):
        try:
            records.append(ProcessRecord(**json.loads(path.read_text())))
        except FileNotFoundError:
            continue  # removed while we listed
        except (ValueError, TypeError):
            path.unlink(missing_ok=True)
    return records


@dataclass
class ProcessState:
    """A record checked against the live process table."""

    record: ProcessRecord
    alive: bool
    reason: str = ""  # why a record is stale
    uptime: float | None = None
    rss: int | None = None  # bytes, the process and its descendants
    children: int = 0

    @property
    def status(self) -> str:
        return "running" if self.alive else f"stale: {self.reason}"

    def as_dict(self) -> dict:
        record = asdict(self.record)
        return {
            **record,
            "status": "running" if self.alive else "stale",
            "reason": self.reason,
            "uptime_seconds": None if self.uptime is None else round(self.uptime, 1),
            "rss_bytes": self.rss,
            "child_processes": self.children,
        }


def check_record(
    record: ProcessRecord, recorded: set[int] = frozenset()
) -> ProcessState:
    """Return whether the recorded process is still the one that was recorded.

    Memory counts the process and its descendants (Celery's pool processes), except
    descendants that have records of their own (the supervisor's children).
    """
    stat = read_stat(record.pid)
    if stat is None:
        return ProcessState(record, alive=False, reason=f"PID {record.pid} is gone")
    if stat["start_ticks"] != record.start_ticks:
        return ProcessState(
            record,
            alive=False,
            reason=f"PID {record.pid} now belongs to another process",
        )
    if stat["state"] in {"Z", "X"}:
        return ProcessState(record, alive=False, reason=f"PID {record.pid} has exited")
    uptime = _system_uptime() - stat["start_ticks"] / _clock_ticks()
    found = descendants(record.pid, skip=recorded)
    rss = _rss_bytes(record.pid) + sum(_rss_bytes(pid) for pid in found)
    return ProcessState(record, alive=True, uptime=uptime, rss=rss, children=len(found))


ROLE_ORDER = {"supervisor": 0, "server": 1, "worker": 2, "beat": 3}


def inspect_processes() -> list[ProcessState]:
    """Return each recorded process of this project, verified against ``/proc``."""
    records = read_records()
    recorded = {r.pid for r in records}
    states = [check_record(r, recorded) for r in records]
    return sorted(
        states,
        key=lambda s: (ROLE_ORDER.get(s.record.role, 9), s.record.name, s.record.pid),
    )


# --------------------------------------------------------------------------- start


@dataclass
class ProcessSpec:
    """What to run for one child: a name (``worker-2``), its role and its command."""

    name: str
    role: str
    command: list[str]


def parse_bind(bind: str) -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise BackendError(f"--bind {bind!r} is not HOST:PORT; use e.g. 127.0.0.1:8000")
    return host.strip("[]"), int(port)


def plan_backend(
    *, workers: int, bind: str, beat: bool, concurrency: int | None = None
) -> tuple[list[ProcessSpec], str]:
    """Return the children to start and a note on what was left out and why.

    Without a broker (the embedded defaults) there is nothing for workers or Beat to
    talk to, so the server runs alone: jobs then run in-process.
    """
    host, port = parse_bind(bind)
    python = sys.executable
    specs = [
        ProcessSpec(
            "server",
            "server",
            [
                python,
                "-m",
                "uvicorn",
                "config.asgi:application",
                "--host",
                host,
                "--port",
                str(port),
                "--lifespan",
                "off",
            ],
        )
    ]
    if not settings.STAGEHAND_HAS_BROKER:
        return specs, (
            "No broker configured (CELERY_BROKER_URL is empty): starting the server "
            "alone; jobs run in-process. Set CELERY_BROKER_URL to run workers and Beat."
        )
    # --quiet: no banner printed beside the log lines (one format, docs/operations.md).
    celery = [python, "-m", "celery", "-A", "config.celery_app", "--quiet"]
    for number in range(1, workers + 1):
        command = [
            *celery,
            "worker",
            "--loglevel",
            "INFO",
            "--hostname",
            f"worker{number}@%h",
        ]
        if concurrency:
            command += ["--concurrency", str(concurrency)]
        specs.append(ProcessSpec(f"worker-{number}", "worker", command))
    notes = []
    if workers == 0:
        notes.append("--workers 0: no Celery worker started")
    if beat:
        # As in the beat containers: Beat reads its schedule tables at once, so it
        # waits for the migrations (apps/jobs/wait_migrated.py), then takes its place.
        waiting = [python, "-m", "apps.jobs.wait_migrated", "--"]
        specs.append(
            ProcessSpec(
                "beat", "beat", [*waiting, *celery, "beat", "--loglevel", "INFO"]
            )
        )
    else:
        notes.append("--disable-beat: scheduled jobs will not run")
    return specs, "; ".join(notes)


def child_environment() -> dict[str, str]:
    """The environment of every child: ours, with the same settings and var dir."""
    env = dict(os.environ)
    # Overridden settings (tests) have no SETTINGS_MODULE: keep the environment's.
    module = settings.SETTINGS_MODULE or os.environ.get("DJANGO_SETTINGS_MODULE")
    if module:
        env["DJANGO_SETTINGS_MODULE"] = module
    env["STAGEHAND_VAR_DIR"] = str(settings.VAR_DIR)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Child:
    spec: ProcessSpec
    proc: subprocess.Popen | None = None
    record: ProcessRecord | None = None
    spawned_at: float = 0.0
    failures: int = 0
    restarts: int = 0
    restart_at: float = 0.0
    log: Path | None = field(default=None, repr=False)
    pump: threading.Thread | None = field(default=None, repr=False)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


class Supervisor:
    """Start the children, restart those that die, stop them all on SIGTERM/SIGINT.

    The loop is small steps: ``tick()`` does one round of checks and returns whether it
    did any work; the signal handlers only set ``self.shutdown``.
    """

    def __init__(
        self,
        specs: Iterable[ProcessSpec],
        *,
        report: Report,
        stop_timeout: float = 10.0,
        poll_interval: float = 0.2,
        first_backoff: float = FIRST_BACKOFF,
    ):
        self.children = [Child(spec) for spec in specs]
        self.report = report
        self.stop_timeout = stop_timeout
        self.poll_interval = poll_interval
        self.first_backoff = first_backoff
        self.shutdown = False
        self.record: ProcessRecord | None = None
        self.logs: dict[str, RotatingLog] = {}

    # Signal handlers run between two bytecodes of the main thread: only set a flag.
    def on_signal(self, signum: int, frame: object) -> None:
        if not self.shutdown:
            self.report(f"{signal.Signals(signum).name} received: stopping")
        self.shutdown = True

    def spawn(self, child: Child) -> None:
        log_dir().mkdir(parents=True, exist_ok=True)
        child.log = log_dir() / f"{child.spec.name}.log"
        if child.spec.name not in self.logs:
            self.logs[child.spec.name] = RotatingLog(child.log)
        # A session of its own: Ctrl-C on the terminal reaches the supervisor only,
        # which then stops the children in order. Its output comes through a pipe,
        # so that the supervisor can rotate the file it goes to.
        child.proc = subprocess.Popen(
            child.spec.command,
            cwd=settings.BASE_DIR,
            env=child_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        child.pump = threading.Thread(
            target=pump,
            args=(
                child.proc.stdout,
                self.logs[child.spec.name],
                child.spec.name,
                child.proc.pid,
            ),
            name=f"log of {child.spec.name}",
            daemon=True,
        )
        child.pump.start()
        child.spawned_at = time.monotonic()
        child.record = ProcessRecord.for_pid(
            child.spec.name,
            child.spec.role,
            child.proc.pid,
            child.spec.command,
            restarts=child.restarts,
        )
        child.record.write()

    def start(self) -> None:
        self.record = ProcessRecord.for_pid(
            "supervisor", "supervisor", os.getpid(), list(sys.argv)
        )
        for child in self.children:
            self.spawn(child)
            self.report(
                f"{child.spec.name} started (PID {child.proc.pid}), log {child.log}"
            )
        # Written last: `start --detach` waits for it to know every child is recorded.
        self.record.write()

    def tick(self) -> bool:
        """Restart what is due, note what died; return whether anything happened."""
        did_work = False
        now = time.monotonic()
        for child in self.children:
            if child.proc is None:
                if now >= child.restart_at and not self.shutdown:
                    child.restarts += 1
                    self.spawn(child)
                    self.report(
                        f"{child.spec.name} restarted (PID {child.proc.pid}, "
                        f"restart {child.restarts})"
                    )
                    did_work = True
                continue
            code = child.proc.poll()
            if code is None:
                continue
            did_work = True
            ran_for = now - child.spawned_at
            if ran_for >= BACKOFF_RESET:
                child.failures = 0
            child.failures += 1
            delay = min(self.first_backoff * 2 ** (child.failures - 1), MAX_BACKOFF)
            child.restart_at = now + delay
            if child.record:
                child.record.remove()
            self.report(
                f"{child.spec.name} (PID {child.proc.pid}) died with "
                f"{describe_exit(code)} after {human_duration(ran_for)}; "
                f"restarting in {delay:g} s (see {child.log})"
            )
            child.proc = None
        return did_work

    def stop_children(self) -> None:
        """SIGTERM every child, wait up to ``stop_timeout``, then SIGKILL the rest."""
        running = [c for c in self.children if c.proc and c.proc.poll() is None]
        for child in running:
            child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for child in running:
            try:
                code = child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                self.report(
                    f"{child.spec.name} (PID {child.proc.pid}) stopped "
                    f"({describe_exit(code)})"
                )
            except subprocess.TimeoutExpired:
                _kill_group(child.proc.pid)
                child.proc.wait()
                self.report(
                    f"{child.spec.name} (PID {child.proc.pid}) did not stop within "
                    f"{self.stop_timeout:g} s: killed"
                )
        for child in self.children:
            if child.record:
                child.record.remove()
            if child.pump:
                # The last lines of a stopped child reach its log before it closes.
                child.pump.join(timeout=PUMP_DRAIN_TIMEOUT)
            child.proc = None
        for log in self.logs.values():
            log.close()

    def run(self, install_signals: bool = True) -> None:
        previous = {}
        if install_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, self.on_signal)
        try:
            self.start()
            while not self.shutdown:
                if not self.tick():
                    time.sleep(self.poll_interval)
        finally:
            self.stop_children()
            if self.record:
                self.record.remove()
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _kill_group(pid: int) -> None:
    """SIGKILL a child and its own descendants (it leads its own process group)."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def start_detached(
    argv: list[str], *, timeout: float = 60.0
) -> tuple[ProcessRecord, Path]:
    """Start ``backend start ARGV`` as a background supervisor in its own session and
    return its record once every child is recorded."""
    log_dir().mkdir(parents=True, exist_ok=True)
    log = log_dir() / "backend.log"
    command = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "backend"]
    command += ["start", *argv, "--skip-cleanup", "--log-file", str(log)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            command,
            cwd=settings.BASE_DIR,
            env=child_environment(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in read_records():
            if record.role == "supervisor" and record.pid == proc.pid:
                return record, log
        if proc.poll() is not None:
            raise BackendError(
                f"the backend exited during start ({describe_exit(proc.returncode)}); "
                f"see {log}"
            )
        time.sleep(0.1)
    raise BackendError(
        f"the backend did not report ready within {timeout:g} s; see {log}"
    )


# --------------------------------------------------------------------------- stop


@dataclass
class Outcome:
    """What ``stop``/``kill`` did to one recorded process."""

    name: str
    role: str
    pid: int
    result: str  # stopped, killed, stale, still running

    def as_dict(self) -> dict:
        return asdict(self)


def _alive(record: ProcessRecord) -> bool:
    return check_record(record).alive


def _wait_gone(records: list[ProcessRecord], deadline: float) -> list[ProcessRecord]:
    """Wait until every record's process is gone or the deadline; return the rest."""
    remaining = [r for r in records if _alive(r)]
    while remaining and time.monotonic() < deadline:
        time.sleep(0.1)
        remaining = [r for r in remaining if _alive(r)]
    return remaining


def stop_backend(*, timeout: float = 30.0) -> list[Outcome]:
    """SIGTERM this project's recorded processes and wait up to ``timeout`` seconds.

    Supervisors go first, so they stop their children in order instead of restarting
    them; whatever is left after they exit (orphans of a killed supervisor) is
    signalled directly. Stale records are removed and reported, never signalled.
    """
    outcomes: list[Outcome] = []
    live: list[ProcessRecord] = []
    for state in inspect_processes():
        record = state.record
        if state.alive:
            live.append(record)
        else:
            record.remove()
            outcomes.append(Outcome(record.name, record.role, record.pid, "stale"))
    deadline = time.monotonic() + timeout
    supervisors = [r for r in live if r.role == "supervisor"]
    others = [r for r in live if r.role != "supervisor"]
    for record in supervisors:
        _signal(record, signal.SIGTERM)
    _wait_gone(supervisors, deadline)
    for record in others:
        if _alive(record):
            _signal(record, signal.SIGTERM)
    left = _wait_gone(live, deadline)
    for record in live:
        if record in left:
            outcomes.append(Outcome(record.name, record.role, record.pid, "running"))
        else:
            record.remove()
            outcomes.append(Outcome(record.name, record.role, record.pid, "stopped"))
    return outcomes


def kill_backend() -> list[Outcome]:
    """SIGKILL this project's recorded processes (supervisors first) and their groups."""
    outcomes: list[Outcome] = []
    states = inspect_processes()  # supervisors sort first
    for state in states:
        record = state.record
        if not state.alive:
            record.remove()
            outcomes.append(Outcome(record.name, record.role, record.pid, "stale"))
            continue
        if record.role == "supervisor":
            _signal(record, signal.SIGKILL)
        else:
            _kill_group(record.pid)
    killed = [s.record for s in states if s.alive]
    left = _wait_gone(killed, time.monotonic() + 5)
    for record in killed:
        if record not in left:
            record.remove()
        outcomes.append(
            Outcome(
                record.name,
                record.role,
                record.pid,
                "running" if record in left else "killed",
            )
        )
    return outcomes


def _signal(record: ProcessRecord, signum: int) -> None:
    # Checked right before signalling: never signal a PID that was reused.
    if not _alive(record):
        return
    try:
        os.kill(record.pid, signum)
    except ProcessLookupError:
        pass
