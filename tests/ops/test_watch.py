"""`watch`: a line per component whenever its status changes."""

from __future__ import annotations

import signal
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.ops import backend
from apps.ops.management.commands.watch import Command as Watch
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


def test_watch_rejects_a_zero_interval():
    with pytest.raises(CommandError, match="--interval must be more than 0"):
        call_command("watch", "--interval", "0", stdout=StringIO())


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
