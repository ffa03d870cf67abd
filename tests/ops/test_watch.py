"""`watch`: a line per component whenever its status changes."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from apps.ops import backend
from apps.ops.management.commands.watch import Command as Watch
from tests.conftest import database_url
from tests.helpers import wait_for
from tests.ops.helpers import SLEEPER


@pytest.mark.django_db
def test_watch_prints_every_component_once_then_only_changes(var_dir):
    watch = Watch(stdout=StringIO())
    watch.last = {}
    child = subprocess.Popen(SLEEPER)
    try:
        backend.ProcessRecord.for_pid("server", "server", child.pid, SLEEPER).write()
        assert watch.check_once() is True
        first = watch.stdout._out.getvalue().splitlines()
        assert [line.split()[1] for line in first][:2] == ["processes", "workers"]
        assert "processes     ok" in first[0]

        assert watch.check_once() is False  # nothing changed, nothing printed
        assert watch.stdout._out.getvalue().splitlines() == first
    finally:
        child.kill()
        child.wait()
    assert watch.check_once() is True
    (changed,) = watch.stdout._out.getvalue().splitlines()[len(first) :]
    assert "processes     unavailable" in changed
    assert changed.endswith("(was ok)")
    assert f"PID {child.pid} has exited" in changed or "is gone" in changed


@pytest.mark.django_db
def test_watch_exit_status_says_whether_everything_ended_healthy(var_dir):
    out = StringIO()
    call_command("watch", "--count", "2", "--interval", "0.01", stdout=out)
    assert out.getvalue().splitlines()[-1] == "Ended with every component ok."

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    backend.ProcessRecord.for_pid("server", "server", gone.pid, ["x"]).write()
    with pytest.raises(CommandError, match="ended with unavailable: processes") as e:
        call_command("watch", "--count", "1", stdout=StringIO())
    assert e.value.returncode == 2


@pytest.mark.parametrize("option", ["--interval-s", "--interval"])
def test_watch_rejects_a_zero_interval(option):
    # --interval-s spells out the unit; --interval, the old spelling, still works.
    with pytest.raises(CommandError, match="--interval-s must be more than 0 seconds"):
        call_command("watch", option, "0", stdout=StringIO())


def test_watch_runs_until_interrupted(child_env):
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "watch", "--interval", "0.2"],
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = wait_for(proc.stdout.readline, "watch's first line")
        assert "processes" in first
        proc.send_signal(signal.SIGINT)
        rest, errors = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, errors
    assert rest.splitlines()[-1] == "Ended with every component ok."


@pytest.mark.django_db
def test_watch_gives_the_signal_handlers_back(var_dir):
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    call_command("watch", "--count", "1", stdout=StringIO())
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


@pytest.mark.django_db
def test_watch_shows_a_component_coming_up(var_dir):
    watch = Watch(stdout=StringIO())
    watch.last = {}
    watch.check_once()
    first = watch.stdout._out.getvalue().splitlines()
    assert "processes     not configured" in first[0]
    child = subprocess.Popen(SLEEPER)
    try:
        backend.ProcessRecord.for_pid("server", "server", child.pid, SLEEPER).write()
        assert watch.check_once() is True
        (came_up,) = watch.stdout._out.getvalue().splitlines()[len(first) :]
    finally:
        child.kill()
        child.wait()
    assert "processes     ok" in came_up
    assert came_up.endswith("(was not configured)")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_watch_survives_its_database_session_being_terminated(child_env):
    """A restore ends every session on the database it swaps in; so does this."""
    env = {**child_env, "DATABASE_URL": database_url()}
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "watch", "--interval-s", "0.2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    # A reader thread: a watch that never prints the line fails the wait, never hangs it.
    reader = threading.Thread(
        target=lambda: [lines.put(line) for line in proc.stdout], daemon=True
    )
    reader.start()

    def line_with(*words: str) -> str | None:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            return None
        seen.append(line)
        return line if all(word in line.split() for word in words) else None

    try:
        wait_for(lambda: line_with("database", "ok"), "watch's first database line")
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'"
            )
            assert [row[0] for row in cursor.fetchall()] == [True]
        down = wait_for(
            lambda: line_with("database", "unavailable"), "the database down"
        )
        assert down.rstrip().endswith("(was ok)")
        up = wait_for(
            lambda: line_with("database", "ok"), "the database back", timeout=30
        )
        assert up.rstrip().endswith("(was unavailable)")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, "".join(seen) + proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
        proc.stdout.close()
        proc.stderr.close()
    last = wait_for(lambda: line_with("Ended"), "watch's last line", timeout=10)
    assert last.strip() == "Ended with every component ok."
