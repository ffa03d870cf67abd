"""What tests of every app share: running commands, here and in a child, and waiting.

One copy of each, for the whole suite; the personas (alice, bob, harbor, …) are in
tests/personas.py.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from io import StringIO
from pathlib import Path
from typing import Any, NamedTuple, TextIO, TypeVar
from urllib.parse import urlsplit

import pytest
from django.core.files.storage import storages
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

ROOT = Path(__file__).resolve().parent.parent

T = TypeVar("T")


class Printed(NamedTuple):
    """What a command wrote on its standard output and on its standard error."""

    out: str
    err: str

    @property
    def both(self) -> str:
        """Both, as one text (the order between the two is not kept)."""
        return self.out + self.err


def printed(*args: str, stdin: str | TextIO | None = None, **options: Any) -> Printed:
    """Run the management command ``args`` in this process; return what it printed.

    ``stdin`` is a string to read from or a stream (a terminal stand-in). When the
    command fails, the CommandError raised carries ``printed``: the output so far.
    """
    out, err = StringIO(), StringIO()
    if stdin is not None:
        options["stdin"] = StringIO(stdin) if isinstance(stdin, str) else stdin
    try:
        call_command(*args, stdout=out, stderr=err, **options)
    except CommandError as exc:
        exc.printed = Printed(out.getvalue(), err.getvalue())
        raise
    return Printed(out.getvalue(), err.getvalue())


def call(*args: str, stdin: str | TextIO | None = None, **options: Any) -> str:
    """Run the management command ``args`` in this process; return its standard output."""
    return printed(*args, stdin=stdin, **options).out


def api_client(user: Any, **options: Any) -> APIClient:
    """An API client that authenticates as ``user`` with a token of its own, as a
    script does (``Authorization: Token …``)."""
    client = APIClient(**options)
    client.credentials(
        HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}"
    )
    return client


def embedded_env(tmp_path: Path) -> dict:
    """A child process's environment on the embedded defaults: its own SQLite
    database and var folder under ``tmp_path``, no Redis, broker or S3."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("REDIS_URL", "CELERY_BROKER_URL", "AWS_STORAGE_BUCKET_NAME")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.local",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        STAGEHAND_VAR_DIR=str(tmp_path / "var"),
    )
    return env


def manage(
    env: dict, *args: str, timeout: float = 120, check: bool = False
) -> subprocess.CompletedProcess:
    """Run ``manage.py ARGS`` in a child process with ``env``, as an operator would.

    ``check``: fail the test, showing the child's output, unless it exits with 0.
    """
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def bench(script: str, *args: str, timeout: float = 300) -> str:
    """Run ``bench/SCRIPT ARGS`` as docs/benchmarks.md does; return what it printed,
    failing the test, with its output, unless it exits with 0. The benchmarks choose
    their own settings (the local ones, their own databases), not the suite's."""
    done = subprocess.run(
        [sys.executable, f"bench/{script}", *args],
        cwd=ROOT,
        env={
            key: value
            for key, value in os.environ.items()
            if key not in {"DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL"}
        },
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def wait_for(predicate: Callable[[], T], what: str, timeout: float = 90) -> T:
    """Poll until ``predicate()`` is truthy and return it; fail naming ``what`` never
    happened after ``timeout`` seconds (never hang)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(url: str, default_port: int) -> bool:
    """Whether something accepts connections at ``url``'s host and port."""
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), timeout=2
        ):
            return True
    except OSError:
        return False


# --json output and the commands docs/ show
# ------------------------------------------------------------------------------


def run_json(command: str, *args: str, stdin: Any = None) -> tuple[Any, str]:
    """Run a command; return the one JSON document on its stdout, and its stderr.

    Fails unless stdout is exactly that document (no prompt, note or success line)."""
    out, err = printed(command, *args, stdin=stdin)
    data = json.loads(out)
    assert out == json.dumps(data, indent=2, sort_keys=True) + "\n"
    return data, err


def documented(doc: str, command: str) -> list[str]:
    """Return the arguments of ``manage.py COMMAND`` once ``doc`` shows it as a line of
    its own (a trailing ``# comment`` allowed), so the test runs what the doc says."""
    text = (ROOT / doc).read_text()
    pattern = rf"manage\.py {re.escape(command)}[ \t]*(#.*)?$"
    assert re.search(pattern, text, re.MULTILINE), f"{doc} no longer shows {command}"
    return shlex.split(command)


def close_s3_connections() -> None:
    """Close the pooled HTTP connections of the S3 storages built so far.

    django-storages keeps a boto3 resource per storage and thread; when a test's
    ``STORAGES`` are swapped back, Django forgets the storage and its sockets to the
    loopback S3 server are left to the garbage collector, whose ResourceWarning then
    fails whichever later test it runs in. Call this before the swap back.
    """
    for storage in storages._storages.values():
        connection = getattr(getattr(storage, "_connections", None), "connection", None)
        if connection is not None:
            connection.meta.client.close()
