"""`backend start|processes|stop|kill` on real child processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from apps.ops import backend
from tests.helpers import free_port, manage, printed, wait_for
from tests.ops.helpers import SLEEPER, STUBBORN, healthz, pid_running, processes


def run_backend(*args: str) -> str:
    return printed("backend", *args).both


def test_supervisor_restarts_a_child_killed_from_outside(var_dir):
    lines: list[str] = []
    supervisor = backend.Supervisor(
        [backend.ProcessSpec("sleeper", "worker", SLEEPER)],
        report=lines.append,
        first_backoff=0.1,
    )
    supervisor.start()
    try:
        child = supervisor.children[0]
        first_pid = child.proc.pid
        assert (backend.run_dir() / f"sleeper.{first_pid}.json").exists()

        os.kill(first_pid, signal.SIGKILL)

        def restarted():
            supervisor.tick()
            return child.proc is not None and child.proc.pid != first_pid

        wait_for(restarted, "the supervisor to restart the killed child")
        assert any("died with signal SIGKILL" in line for line in lines)
        assert any("restarted" in line for line in lines)
        names = {(r.name, r.pid) for r in backend.read_records()}
        assert ("sleeper", first_pid) not in names
        assert ("sleeper", child.proc.pid) in names
        states = [s for s in backend.inspect_processes() if s.record.name == "sleeper"]
        assert states[0].alive and states[0].record.restarts == 1
    finally:
        second = supervisor.children[0].proc
        supervisor.stop_children()
    assert second.poll() is not None
    assert not [r for r in backend.read_records() if r.name == "sleeper"]


def test_supervisor_backs_off_when_a_child_keeps_dying(var_dir):
    lines: list[str] = []
    crasher = [sys.executable, "-c", "raise SystemExit(3)"]
    supervisor = backend.Supervisor(
        [backend.ProcessSpec("crasher", "worker", crasher)],
        report=lines.append,
        first_backoff=0.05,
    )
    supervisor.start()
    try:
        wait_for(
            lambda: supervisor.tick() and supervisor.children[0].failures >= 3,
            "three failures",
        )
    finally:
        supervisor.stop_children()
    delays = [
        float(line.split("restarting in ")[1].split(" s")[0])
        for line in lines
        if "restarting in" in line
    ]
    assert delays[:3] == [0.05, 0.1, 0.2]
    assert all("exit status 3" in line for line in lines if "died" in line)


def test_processes_reports_stale_records_and_stop_never_signals_them(var_dir):
    # A PID that is gone, and a PID that now belongs to another process: this one.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    backend.ProcessRecord.for_pid("worker-1", "worker", gone.pid, ["x"]).write()
    reused = backend.ProcessRecord.for_pid("server", "server", os.getpid(), ["x"])
    reused.start_ticks -= 1
    reused.write()

    out = StringIO()
    err = StringIO()
    call_command("backend", "processes", stdout=out, stderr=err)
    table = out.getvalue()
    assert f"stale: PID {gone.pid} is gone" in table
    assert f"stale: PID {os.getpid()} now belongs to another process" in table
    assert "2 stale records" in err.getvalue()

    data = json.loads(run_backend("processes", "--json"))
    assert {p["status"] for p in data} == {"stale"}

    output = run_backend("stop", "--timeout", "1")
    # Still alive: the reused PID (ours) was not signalled.
    assert "was already gone (stale record removed)" in output
    assert backend.read_records() == []


def test_processes_shows_pid_role_uptime_and_memory(var_dir):
    child = subprocess.Popen(SLEEPER)
    try:
        backend.ProcessRecord.for_pid("beat", "beat", child.pid, SLEEPER).write()
        output = run_backend("processes")
        header, row = output.splitlines()[:2]
        assert header.split() == [
            "PID",
            "Name",
            "Role",
            "Status",
            "Uptime",
            "Memory",
            "Restarts",
        ]
        assert row.split()[:4] == [str(child.pid), "beat", "beat", "running"]
        assert "MiB" in row or "KiB" in row
        data = json.loads(run_backend("processes", "--json"))
        assert data[0]["rss_bytes"] > 0 and data[0]["uptime_seconds"] >= 0
    finally:
        child.kill()
        child.wait()


def test_stop_gives_up_after_timeout_and_kill_forces(var_dir):
    child = subprocess.Popen(STUBBORN, stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert child.stdout.readline() == b"ready\n"  # SIGTERM is ignored from here
        backend.ProcessRecord.for_pid("worker-1", "worker", child.pid, STUBBORN).write()

        with pytest.raises(CommandError, match="still running after 0.5 s"):
            run_backend("stop", "--timeout", "0.5")
        assert child.poll() is None
        assert len(backend.read_records()) == 1

        output = run_backend("kill")
        assert f"worker-1 (PID {child.pid}) killed" in output
        assert child.wait(timeout=10) == -signal.SIGKILL
        assert backend.read_records() == []
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()


def test_stop_with_nothing_recorded_says_so(var_dir):
    assert "No backend processes recorded." in run_backend("stop")


def test_start_rejects_a_bad_bind(var_dir):
    with pytest.raises(CommandError, match="is not HOST:PORT"):
        run_backend("start", "--bind", "8000")


# --------------------------------------------------------------------------- end to end


def test_detached_backend_restarts_a_killed_server_cleans_up_and_stops(child_env):
    port = free_port()
    started = manage(
        child_env,
        "backend",
        "start",
        "--detach",
        "--bind",
        f"127.0.0.1:{port}",
        check=True,
    )
    try:
        assert "No broker configured" in started.stdout
        assert "starting the server alone" in started.stdout
        listed = manage(child_env, "backend", "processes", "--json", check=True).stdout
        assert {p["name"] for p in json.loads(listed)} == {"supervisor", "server"}
        first = processes(child_env)
        assert set(first) == {"supervisor", "server"}
        assert first["server"]["status"] == "running"
        wait_for(lambda: healthz(port), "the server to answer /healthz")

        os.kill(first["server"]["pid"], signal.SIGKILL)
        second = wait_for(
            lambda: (
                (p := processes(child_env)).get("server", {}).get("restarts") == 1 and p
            ),
            "the supervisor to restart the server",
        )
        assert second["server"]["pid"] != first["server"]["pid"]
        assert second["supervisor"]["pid"] == first["supervisor"]["pid"]
        wait_for(lambda: healthz(port), "the restarted server to answer")
        log = (Path(child_env["STAGEHAND_VAR_DIR"]) / "log" / "backend.log").read_text()
        assert "died with signal SIGKILL" in log

        # A second start stops what the first one left running.
        again = manage(
            child_env,
            "backend",
            "start",
            "--detach",
            "--bind",
            f"127.0.0.1:{port}",
            check=True,
        )
        assert "left over from an earlier start" in again.stdout
        third = processes(child_env)
        assert not pid_running(second["supervisor"]["pid"])
        assert not pid_running(second["server"]["pid"])
        assert third["supervisor"]["pid"] != second["supervisor"]["pid"]
        wait_for(lambda: healthz(port), "the new server to answer")
    finally:
        stopped = manage(child_env, "backend", "stop", "--timeout", "30", check=False)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "server" in stopped.stdout and "stopped" in stopped.stdout
    assert processes(child_env) == {}
    assert not pid_running(third["server"]["pid"])


def test_foreground_start_stops_all_children_on_ctrl_c(child_env):
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "backend",
            "start",
            "--bind",
            f"127.0.0.1:{port}",
        ],
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        running = wait_for(
            lambda: "supervisor" in (p := processes(child_env)) and p,
            "the supervisor record",
        )
        wait_for(lambda: healthz(port), "the server to answer")
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert "SIGINT received: stopping" in output
    assert f"server (PID {running['server']['pid']}) stopped" in output
    assert not pid_running(running["server"]["pid"])
    assert processes(child_env) == {}


def test_beat_waits_for_the_migrations_then_becomes_beat(settings):
    settings.STAGEHAND_HAS_BROKER = True
    specs, _note = backend.plan_backend(workers=1, bind="127.0.0.1:8000", beat=True)
    (beat,) = [spec for spec in specs if spec.role == "beat"]
    python = sys.executable
    waiter = [python, "-m", "apps.jobs.wait_migrated", "--"]
    assert beat.command[: len(waiter)] == waiter
    assert beat.command[len(waiter) :][:5] == [
        python,
        "-m",
        "celery",
        "-A",
        "config.celery_app",
    ]
    assert "beat" in beat.command[len(waiter) :]


BURN = "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass"


def test_read_stat_counts_the_cpu_of_a_process_and_of_its_waited_for_children():
    # The parent waits for a child that burns half a second of CPU, then idles: the
    # child's ticks are then counted in the parent's children_cpu_ticks, not its own.
    script = (
        "import subprocess, sys\n"
        f"subprocess.run([sys.executable, '-c', {BURN!r}])\n"
        "print('waited', flush=True)\n"
        "input()"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert parent.stdout.readline() == b"waited\n"
        stat = backend.read_stat(parent.pid)
        ticks = os.sysconf("SC_CLK_TCK")
        assert stat["ppid"] == os.getpid()
        assert stat["children_cpu_ticks"] >= 0.4 * ticks
        assert stat["cpu_ticks"] < stat["children_cpu_ticks"]
        assert parent.pid in backend.descendants(os.getpid())
        assert parent.pid not in backend.descendants(os.getpid(), skip=[parent.pid])
    finally:
        parent.communicate(b"\n", timeout=20)
