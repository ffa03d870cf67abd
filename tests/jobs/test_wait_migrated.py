"""`python -m apps.jobs.wait_migrated`: what the beat containers run before Beat.

Each test runs it as the container does, a child process on its own SQLite database,
while `manage.py migrate` (the django container's part) runs beside it or not at all.
"""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT, embedded_env, manage, wait_for


def waiter(env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "apps.jobs.wait_migrated", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_an_empty_database_is_waited_for_until_the_timeout_then_named(tmp_path):
    done = waiter(embedded_env(tmp_path), "--timeout", "0")
    out, err = done.communicate(timeout=120)
    assert done.returncode == 1
    assert "Gave up after 0 s: " in err
    assert "migrations not applied yet (first: " in err
    assert "migrate_safely" in err and "Traceback" not in err
    assert out == ""


def test_beat_starts_as_soon_as_migrate_beside_it_has_finished(tmp_path):
    env = embedded_env(tmp_path)
    process = waiter(env, "--timeout", "300")
    try:
        # It says what it waits for before anyone migrates, and keeps waiting.
        first = process.stderr.readline()
        assert first.startswith("Waiting for the database's migrations: "), first
        assert process.poll() is None
        manage(env, "migrate", "--noinput", timeout=300, check=True)
        wait_for(lambda: process.poll() is not None, "the waiter to end after migrate")
        rest = process.stderr.read()
        assert process.returncode == 0, rest
        assert rest.strip().endswith("The database's migrations are applied."), rest
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
        process.stderr.close()


def test_a_migrated_database_starts_beat_at_once_and_silently(tmp_path):
    env = embedded_env(tmp_path)
    manage(env, "migrate", "--noinput", timeout=300, check=True)
    done = waiter(env, "--timeout", "0")
    out, err = done.communicate(timeout=120)
    assert (done.returncode, out, err) == (0, "", "")


def test_a_timeout_out_of_range_is_refused_before_any_wait(tmp_path):
    for bad in ("-1", "nan", "inf", "1e400", "soon"):
        done = waiter(embedded_env(tmp_path), "--timeout", bad)
        _out, err = done.communicate(timeout=60)
        assert done.returncode == 2, bad
        assert "--timeout" in err and "Traceback" not in err, err


def test_the_command_after_dashes_runs_in_its_place_once_migrated(tmp_path):
    """What `backend start` runs as its beat: the waiter, then Beat in the same
    process (the supervisor's pid, signals and log stay Beat's)."""
    env = embedded_env(tmp_path)
    manage(env, "migrate", "--noinput", timeout=300, check=True)
    done = waiter(
        env,
        "--timeout",
        "0",
        "--",
        sys.executable,
        "-c",
        "import os; print(os.getpid())",
    )
    out, err = done.communicate(timeout=120)
    assert (done.returncode, err) == (0, "")
    assert out.strip() == str(done.pid)


def test_the_command_is_not_run_when_the_wait_gives_up(tmp_path):
    done = waiter(
        embedded_env(tmp_path), "--timeout", "0", "--", sys.executable, "-c", "print(1)"
    )
    out, err = done.communicate(timeout=120)
    assert (done.returncode, out) == (1, "")
    assert "Gave up after 0 s: " in err


def test_a_command_that_cannot_run_is_named(tmp_path):
    env = embedded_env(tmp_path)
    manage(env, "migrate", "--noinput", timeout=300, check=True)
    done = waiter(env, "--timeout", "0", "--", "no-such-beat-command")
    out, err = done.communicate(timeout=120)
    assert done.returncode == 1
    assert "Cannot run 'no-such-beat-command': No such file or directory." in err
    assert "Traceback" not in err
