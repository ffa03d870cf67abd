"""Benchmark: ways to restore a custom-format dump, against single-job pg_restore.

    .venv/bin/python bench/restore_paths.py --size-mb 1024 [--repeat 2]

Issue 16 asks for a restore >= 1.5x single-job ``pg_restore`` of the same file. On
2 cores, ``pg_restore --jobs 2`` reaches about 1.4x, because one job already keeps
about 1.4 cores busy. This measures the ways a restore could go, on the database
bench/backup.py generates, each against the anchor in the same round (ratio =
anchor time / its time):

* ``jobs``: ``pg_restore --jobs N`` of the same compressed dump;
* ``no-inflate``: ``pg_restore --jobs N`` of an uncompressed dump of the same
  database (``pg_dump --compress=0``), the inflating it costs left out: the most any
  restore that inflates beforehand (into a local spool, say) could gain;
* ``loader``: the steps ``manage.py restore`` runs (apps/backups/engines/pgload.py),
  one after the other: ``pg_restore`` of the schema, then the tables' data sent by
  this process itself, N ``COPY ... (FREEZE)`` streams side by side inflating with
  ISA-L in threads, then ``pg_restore --section=post-data --jobs N`` (restore starts
  that one beside the last loads, and reads the checksum beside them too).

Every ``pg_restore`` runs with the sessions restore gives it (``restore_env``).

Each line prints the seconds, the core-seconds the whole machine was busy (from
/proc/stat), the seconds of a VACUUM of the restored database right after (the work
left to autovacuum: setting every page all-visible, unless the rows came frozen) and
the load average. Needs PostgreSQL at --server; creates and drops
the databases stagehand_bench_paths*.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import backup  # noqa: E402 - the generator and the meters of bench/backup.py

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
import django  # noqa: E402

django.setup()  # for restore's session settings (BACKUP_RESTORE_MAINTENANCE_WORK_MEM)
from apps.backups.engines import pgarchive, pgload, postgresql  # noqa: E402

SOURCE = "stagehand_bench_paths"
TARGET = "stagehand_bench_paths_restored"


def fresh_target(server: str) -> None:
    with backup.admin(server) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TARGET}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{TARGET}"')


def pg_restore(server: str, dump: Path, *extra: str) -> None:
    """pg_restore with the sessions ``manage.py restore`` gives it (restore_env)."""
    jobs = max([int(a.split("=")[1]) for a in extra if a.startswith("--jobs=")] or [1])
    env = postgresql.restore_env({}, jobs)
    subprocess.run(
        ["pg_restore", "--no-owner", "--no-acl", "--exit-on-error", *extra]
        + [f"--dbname={server}/{TARGET}", str(dump)],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def loader(server: str, dump: Path, jobs: int) -> None:
    """What ``manage.py restore`` runs for an archive pgarchive reads: pg_restore
    before and after the data, the tables' data from apps/backups/engines/pgload.py."""
    fresh_target(server)
    contents = pgarchive.read_contents(dump)
    listing = dump.with_suffix(".list")
    listing.write_text(pgload.use_list(contents.others))
    pg_restore(
        server, dump, "--section=pre-data", "--section=data", f"--use-list={listing}"
    )
    pgload.load(
        dump,
        contents,
        lambda: psycopg.connect(f"{server}/{TARGET}", autocommit=True),
        jobs,
    )
    pg_restore(server, dump, "--section=post-data", f"--jobs={jobs}")


def contents(server: str, database: str) -> list[tuple]:
    """Rows and a checksum of every generated table, and the indexes: what each way
    must restore."""
    with psycopg.connect(f"{server}/{database}") as conn:
        tables = [
            conn.execute(
                f"SELECT count(*), sum(hashtext(t::text)::bigint) FROM {table} t"
            ).fetchone()
            for table in backup.TABLES
        ]
        indexes = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()
    return [*tables, tuple(name for (name,) in indexes)]


def measured(
    label: str, anchor: float | None, run, server: str, expected: list[tuple]
) -> float:
    """Time ``run``, then the VACUUM that follows a restore (the work a restore leaves
    to autovacuum), check what it restored, print the line; return the seconds."""
    started, cpu = time.monotonic(), backup.busy()
    run()
    seconds, cpu = time.monotonic() - started, backup.busy() - cpu
    vacuum = time.monotonic()
    with psycopg.connect(f"{server}/{TARGET}", autocommit=True) as conn:
        conn.execute("VACUUM")
    vacuum = time.monotonic() - vacuum
    if contents(server, TARGET) != expected:
        raise SystemExit(f"{label}: the restored database differs from the source")
    ratio = f"{anchor / seconds:.2f}x" if anchor else "anchor"
    print(
        f"  {label:<44} {seconds:6.1f} s {cpu:6.1f} busy core-s  {ratio:>7}  "
        f"then VACUUM {vacuum:4.1f} s  [{backup.load()}]",
        flush=True,
    )
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    options = parser.parse_args()
    server, jobs = options.server, options.jobs
    backup.DB = SOURCE
    work = Path(tempfile.mkdtemp(prefix="stagehand-bench-paths-"))
    compressed, uncompressed = work / "compressed.dump", work / "uncompressed.dump"
    try:
        backup.drop_all(server)
        size = backup.generate(server, options.size_mb)
        for path, extra in ((compressed, []), (uncompressed, ["--compress=0"])):
            subprocess.run(
                ["pg_dump", "-Fc", *extra, f"--dbname={server}/{SOURCE}"]
                + ["-f", str(path)],
                check=True,
            )
        print(
            f"database {size / 2**20:.0f} MiB; dump {compressed.stat().st_size / 2**20:.0f}"
            f" MiB compressed, {uncompressed.stat().st_size / 2**20:.0f} MiB not; "
            f"{os.cpu_count()} cores, --jobs {jobs}",
            flush=True,
        )

        def restore(dump: Path, *extra: str):
            def run() -> None:
                fresh_target(server)
                pg_restore(server, dump, *extra)

            return run

        source = contents(server, SOURCE)
        ways = [
            (f"jobs: pg_restore --jobs {jobs}", restore(compressed, f"--jobs={jobs}")),
            (
                f"no-inflate: pg_restore --jobs {jobs}, uncompressed",
                restore(uncompressed, f"--jobs={jobs}"),
            ),
            (
                f"loader: {jobs} COPY FREEZE streams, ISA-L",
                lambda: loader(server, compressed, jobs),
            ),
        ]
        for round_ in range(1, options.repeat + 1):
            print(f"round {round_}:")
            anchor = measured(
                "single-job pg_restore (anchor)",
                None,
                restore(compressed),
                server,
                source,
            )
            for label, run in ways:
                measured(label, anchor, run, server, source)
    finally:
        with backup.admin(server) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{TARGET}" WITH (FORCE)')
        backup.drop_all(server)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
