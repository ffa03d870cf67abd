"""One log format for uvicorn, Django and Celery, and `backend start`'s rotating logs.

Real child processes: `backend start` with its server, worker and beat, and a
supervised child that writes more than a log file may hold.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from apps.ops import backend
from tests.conftest import database_url
from tests.helpers import free_port, manage, wait_for
from tests.ops.helpers import healthz, processes

TEXT_LINE = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} "
    r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) \[\d+\] [\w.]+: "
)


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def log_text(env: dict, name: str) -> str:
    path = Path(env["STAGEHAND_VAR_DIR"]) / "log" / f"{name}.log"
    return path.read_text() if path.exists() else ""


def json_lines(text: str) -> list[dict]:
    """Every line of ``text`` as a JSON object; fails on a line that is not one."""
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON object: {line!r}")
        assert {"timestamp", "level", "logger", "message", "process"} <= set(record)
        records.append(record)
    return records


@pytest.fixture
def started(child_env):
    """Start `backend start --detach` with ``env``; stop it at the end."""
    envs = []

    def start(**extra: str) -> tuple[dict, int]:
        env = {**child_env, **extra}
        port = free_port()
        manage(env, "backend", "start", "--detach", "--bind", f"127.0.0.1:{port}")
        envs.append(env)
        wait_for(lambda: healthz(port), "the server to answer /healthz")
        return env, port

    yield start
    for env in envs:
        manage(env, "backend", "stop", "--timeout", "30")


def test_the_server_logs_uvicorn_and_django_in_one_text_format(started):
    env, port = started(DJANGO_LOG_LEVEL="INFO")
    assert get(f"http://127.0.0.1:{port}/nowhere") == 404
    # The access line is written once the response went out, after Django's.
    text = wait_for(
        lambda: '"GET /nowhere HTTP/1.1" 404' in (t := log_text(env, "server")) and t,
        "the request's access line in the server's log",
    )
    lines = text.splitlines()
    assert all(TEXT_LINE.match(line) for line in lines), text
    # uvicorn's own lines, its access log and Django's, all in the same shape.
    assert any(
        " INFO [" in line and "uvicorn.error: Started server process" in line
        for line in lines
    )
    assert any(
        "uvicorn.access: " in line and '"GET /nowhere HTTP/1.1" 404' in line
        for line in lines
    )
    assert any(
        "WARNING [" in line and "django.request: Not Found: /nowhere" in line
        for line in lines
    )


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_log_format_json_gives_one_object_per_line_from_every_process(
    started, settings
):
    env, port = started(
        LOG_FORMAT="json",
        DJANGO_LOG_LEVEL="INFO",
        CELERY_BROKER_URL=settings.REDIS_URL,
        REDIS_URL=settings.REDIS_URL,
        DATABASE_URL=database_url(),
    )
    assert get(f"http://127.0.0.1:{port}/nowhere") == 404

    def logged(name: str, logger: str, words: str) -> list[dict] | None:
        records = json_lines(log_text(env, name))
        found = [r for r in records if r["logger"] == logger and words in r["message"]]
        return records if found else None

    server = wait_for(
        lambda: logged("server", "django.request", "Not Found: /nowhere"),
        "Django's warning as JSON",
    )
    loggers = {r["logger"] for r in server}
    assert {"uvicorn.error", "uvicorn.access", "django.request"} <= loggers
    worker = wait_for(
        lambda: logged("worker-1", "celery.apps.worker", "ready."),
        "the worker's ready line as JSON",
        timeout=90,
    )
    assert all(r["level"] in {"INFO", "WARNING", "ERROR"} for r in worker)
    wait_for(
        lambda: logged("beat", "celery.beat", "beat: Starting"),
        "beat's start as JSON",
        timeout=90,
    )


def test_a_wrong_log_format_is_refused_by_the_checks(child_env):
    result = manage({**child_env, "LOG_FORMAT": "xml"}, "check", check=False)
    assert result.returncode == 1
    assert "LOG_FORMAT='xml' is not a log format" in result.stderr
    assert "Set LOG_FORMAT to text (the default) or json." in result.stderr


# --------------------------------------------------------------------------- rotation


CHATTY = [
    sys.executable,
    "-c",
    "import sys\n"
    "for n in range(400): print(f'line {n:04d} ' + 'x' * 40, flush=True)\n"
    "sys.stdout.write('no newline at the end'); sys.stdout.flush()\n"
    "import time; time.sleep(600)",
]


def test_a_childs_log_rotates_by_size_keeping_the_configured_number(var_dir, settings):
    settings.BACKEND_LOG_MAX_BYTES = 4000
    settings.BACKEND_LOG_BACKUPS = 2
    supervisor = backend.Supervisor(
        [backend.ProcessSpec("chatty", "worker", CHATTY)], report=lambda line: None
    )
    folder = var_dir / "log"
    supervisor.start()
    try:
        wait_for(
            lambda: "line 0399" in (folder / "chatty.log").read_text(),
            "the child's last line in its log",
        )
    finally:
        supervisor.stop_children()
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["chatty.log", "chatty.log.1", "chatty.log.2"]
    for name in files:
        assert (folder / name).stat().st_size <= 4000, name
    # Whole lines only, in order, across the files; the oldest were removed.
    kept = [
        line
        for name in ("chatty.log.2", "chatty.log.1", "chatty.log")
        for line in (folder / name).read_text().splitlines()
    ]
    assert kept[-1] == "no newline at the end"
    numbers = [int(line.split()[1]) for line in kept[:-1]]
    assert numbers == list(range(numbers[0], 400)) and numbers[0] > 0
    assert all(line.endswith("x" * 40) for line in kept[:-1])


def test_the_detached_backends_logs_rotate_its_own_too(started):
    env, port = started(BACKEND_LOG_MAX_BYTES="400", BACKEND_LOG_BACKUPS="1")
    folder = Path(env["STAGEHAND_VAR_DIR"]) / "log"
    for _ in range(30):
        get(f"http://127.0.0.1:{port}/healthz")  # an access-log line each
    # A rollover renames server.log to server.log.1, then opens a new server.log.
    wait_for(
        lambda: (folder / "server.log.1").exists() and (folder / "server.log").exists(),
        "the server's log to rotate",
    )
    assert not (folder / "server.log.2").exists()
    assert (folder / "server.log").stat().st_size <= 400

    # The supervisor's own lines (a restart here) go to backend.log, rotated too.
    first = processes(env)["server"]["pid"]
    os.kill(first, signal.SIGKILL)
    wait_for(
        lambda: processes(env).get("server", {}).get("restarts") == 1,
        "the supervisor to restart the server",
    )
    wait_for(lambda: healthz(port), "the restarted server to answer")
    wait_for(
        lambda: (
            (folder / "backend.log.1").exists() and (folder / "backend.log").exists()
        ),
        "backend.log to rotate",
    )
    both = (folder / "backend.log.1").read_text() + (folder / "backend.log").read_text()
    assert f"server (PID {first}) died with signal SIGKILL" in both
    assert not (folder / "backend.log.2").exists()


def test_with_json_a_line_written_outside_logging_becomes_a_record(var_dir, settings):
    settings.LOG_FORMAT = "json"
    crasher = [sys.executable, "-c", "print('banner'); raise SystemExit('went wrong')"]
    supervisor = backend.Supervisor(
        [backend.ProcessSpec("crasher", "worker", crasher)], report=lambda line: None
    )
    supervisor.start()
    pid = supervisor.children[0].proc.pid
    try:
        log = var_dir / "log" / "crasher.log"
        text = wait_for(
            lambda: "went wrong" in (t := log.read_text()) and t, "the crash in the log"
        )
    finally:
        supervisor.stop_children()
    records = json_lines(text)[:2]
    assert [(r["logger"], r["message"], r["process"]) for r in records] == [
        ("crasher.output", "banner", pid),
        ("crasher.output", "went wrong", pid),
    ]
