"""Wait until the database holds every migration of the code:
``python -m apps.jobs.wait_migrated [--timeout SECONDS] [-- COMMAND ...]``.

Celery Beat reads its schedule tables the moment it starts. Started beside the
process that migrates (the django container runs ``migrate_safely`` at every start:
on a first start the tables do not exist yet, on an upgrade they are being changed),
it would crash on ``relation "django_celery_beat_crontabschedule" does not exist``, or
send jobs of the new code against the old schema. So the beat containers run this
first (compose/*/django/celery/beat/start), and so does ``manage.py backend start``'s
beat (its COMMAND, which replaces this process once the schema is ready). It says once
what it waits for, and again whenever that changes; exit 0 (or run COMMAND) as soon as
nothing is left to apply, 1 when ``--timeout`` (default 600 s) passes first, naming
what is still missing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

import django
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor

DEFAULT_TIMEOUT = 600.0
POLL = 2.0


def not_applied() -> list[str]:
    """The migrations of the code the default database does not hold, in order."""
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{migration.app_label}.{migration.name}" for migration, _ in plan]


def why_not_ready() -> str | None:
    """What is missing, in a phrase, or None when the schema is the code's."""
    try:
        missing = not_applied()
    except DatabaseError as exc:
        connection.close()  # reconnect on the next try
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"the database does not answer ({type(exc).__name__}: {first})"
    if not missing:
        return None
    count = len(missing)
    return (
        f"{count} migration{'' if count == 1 else 's'} not applied yet "
        f"(first: {missing[0]})"
    )


def wait(
    timeout: float,
    *,
    poll: float = POLL,
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> bool:
    """Return True once the schema is the code's, False when ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    said = None
    while (reason := why_not_ready()) is not None:
        if time.monotonic() >= deadline:
            say(
                f"Gave up after {timeout:.0f} s: {reason}. The django service "
                "migrates at its start (see its log, or run `manage.py "
                "migrate_safely`); start this service again once it has."
            )
            return False
        if reason != said:
            say(
                f"Waiting for the database's migrations: {reason}; the django "
                "service applies them at its start."
            )
            said = reason
        time.sleep(poll)
    if said is not None:
        say("The database's migrations are applied.")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m apps.jobs.wait_migrated", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait at most (default {DEFAULT_TIMEOUT:.0f})",
    )
    parser.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        help="after --: the command to run in this process's place once migrated",
    )
    options = parser.parse_args(argv)
    if not 0 <= options.timeout < 10**7:
        parser.error("--timeout takes seconds from 0 to 9999999")
    command = options.command[1:] if options.command[:1] == ["--"] else options.command
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    django.setup()
    if not wait(options.timeout):
        return 1
    if command:
        connection.close()
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            print(f"Cannot run {command[0]!r}: {exc.strerror}.", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
