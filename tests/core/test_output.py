"""apps.core.output: counted(), and Progress — a tqdm bar on a terminal, a summary
line with its duration elsewhere, log lines never written into the bar."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from io import StringIO
from pathlib import Path

import pytest

from apps.core.output import Progress, counted

ROOT = Path(__file__).resolve().parent.parent.parent


def test_counted_says_one_noun_or_its_plural():
    assert counted(1, "backup") == "1 backup"
    assert counted(0, "backup") == "0 backups"
    assert counted(3, "kind") == "3 kinds"
    assert counted(2, "entry", "entries") == "2 entries"


def test_off_a_terminal_progress_writes_one_summary_line_with_its_duration():
    out = StringIO()
    with Progress(out, 300, "   rows") as bar:
        for _ in range(3):
            bar.advance(100)
    assert bar.enabled is False
    assert re.fullmatch(r"   rows: 300 of 300 in \d+ ms \([\d,]+/s\)\n", out.getvalue())


def test_a_byte_summary_is_in_units_of_bytes():
    out = StringIO()
    with Progress(out, 3 * 1024 * 1024, "Restoring", unit="B") as bar:
        bar.advance(3 * 1024 * 1024)
    assert re.fullmatch(
        r"Restoring: 3\.0 MiB of 3\.0 MiB in \d+ ms \([\d.]+ \w+/s\)\n",
        out.getvalue(),
    )


def test_reaching_a_running_total_moves_the_bar_and_a_smaller_one_starts_a_pass():
    out = StringIO()
    with Progress(out, 300, "Restoring", unit="B") as bar:
        for done in (100, 300):  # the download of a dump
            bar.reach(done)
        bar.reach(40)  # then its load, over the same total
        assert bar.done == 40
        bar.reach(300)
    assert bar.done == 300
    assert out.getvalue().startswith("Restoring: 300 B of 300 B in ")


def test_without_a_total_the_summary_says_the_amount_only():
    out = StringIO()
    with Progress(out, None, "Sending", "connection") as bar:
        bar.advance(2)
    assert out.getvalue().startswith("Sending: 2 connections in ")
    assert out.getvalue().rstrip().endswith(" connections/s)")


def test_a_failed_block_writes_no_summary_and_a_summary_can_be_left_out():
    out = StringIO()
    with pytest.raises(RuntimeError), Progress(out, 10, "rows") as bar:
        bar.advance(3)
        raise RuntimeError("boom")
    assert out.getvalue() == ""
    with Progress(out, 10, "rows", summary=False) as bar:
        bar.advance(10)
    assert out.getvalue() == ""


def read_all(fd: int, timeout: float) -> bytes:
    """Everything the child writes to its terminal until it closes it."""
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        data += chunk
    return data


def run_in_terminal(args: list[str], env: dict, timeout: float = 120) -> str:
    """Run a command on a pseudo-terminal of 120 columns; return what it showed."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        env=env,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        close_fds=True,
    )
    os.close(follower)
    try:
        shown = read_all(leader, timeout)
        assert proc.wait(timeout=timeout) == 0, shown.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    return shown.decode()


@pytest.fixture
def sqlite_env(child_env) -> dict:
    """The embedded defaults (tests/conftest.py), migrated and with one backup."""
    env = child_env
    for args in (["migrate", "-v", "0"], ["backup", "--no-compress"]):
        subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
    return env


def test_on_a_terminal_restore_draws_a_bar_with_total_rate_and_eta(sqlite_env):
    shown = run_in_terminal(
        [sys.executable, "manage.py", "restore", "latest", "--noinput"], sqlite_env
    )
    # A bar redraws its line with \r; a log line and the summary end with \n.
    segments = [s for s in re.split(r"[\r\n]+", shown) if s.strip()]
    bars = [s for s in segments if s.startswith("Restoring:") and "|" in s]
    assert bars, shown
    last = bars[-1]
    # Total in bytes, elapsed<remaining (the ETA) and a rate in bytes per second.
    assert re.search(r"100%\|.*\| [\d.]+[kM]?B/[\d.]+[kM]?B ", last), last
    assert re.search(r"\[\d\d:\d\d<\d\d:\d\d, +[\d.]+[kMG]?B/s\]", last), last
    # restore() logs a warning while the bar is up: it is a line of its own, above
    # the bar, never spliced into it.
    (logged,) = [s for s in segments if "Restoring database" in s]
    # (the log format puts a timestamp first: apps/core/logs.py)
    assert "WARNING" in logged.split()[:2] and "|" not in logged, logged
    assert "%|" not in logged
    assert "Restored default from" in shown


def test_on_a_terminal_backup_counts_towards_the_size_of_the_database(sqlite_env):
    shown = run_in_terminal(
        [sys.executable, "manage.py", "backup", "--no-compress"], sqlite_env
    )
    bars = [s for s in re.split(r"[\r\n]+", shown) if s.startswith("Dumping:")]
    assert bars, shown
    # The first draw: nothing yet of the database file's size (known up front).
    assert re.search(r"0%\|.*\| 0\.00B/[\d.]+[kM]B \[", bars[0]), bars[0]
    assert re.search(r"100%\|.*\| ([\d.]+[kM]?B)/\1 \[", bars[-1]), bars[-1]
    assert "Backed up default to sqlite-backup-" in shown


def test_off_a_terminal_restore_prints_the_summary_line(sqlite_env):
    done = subprocess.run(
        [sys.executable, "manage.py", "restore", "latest", "--noinput"],
        cwd=ROOT,
        env=sqlite_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stdout and "%|" not in done.stdout
    assert re.search(
        r"^Restoring: ([\d.]+ \w+) of \1 in [\d.]+ m?s \(", done.stdout, re.M
    ), done.stdout
