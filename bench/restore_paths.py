"""Benchmark: ways to restore a custom-format dump, against single-job pg_restore.

    .venv/bin/python bench/restore_paths.py --size-mb 1024 [--repeat 2]

Issue 16 asks for a restore >= 1.5x single-job ``pg_restore`` of the same file. On
2 cores, ``pg_restore --jobs 2`` (what ``manage.py restore`` runs) reaches about
1.4x, because one job already keeps about 1.4 cores busy. This measures the other
ways a restore could go, on the database bench/backup.py generates, each against the
anchor in the same round (ratio = anchor time / its time):

* ``jobs``: ``pg_restore --jobs N`` of the same compressed dump;
* ``no-inflate``: ``pg_restore --jobs N`` of an uncompressed dump of the same
  database (``pg_dump --compress=0``), the inflating it costs left out: the most any
  restore that inflates beforehand (into a local spool, say) could gain;
* ``loader``: ``pg_restore --section=pre-data``, then the data sent by this process
  itself, N ``COPY`` streams side by side inflating in threads (zlib without the
  GIL) in 256 KiB pieces, then ``pg_restore --section=post-data --jobs N``: a
  restore that does not leave the inflating to ``pg_restore``'s one process per job.

Each line prints the seconds, the core-seconds the whole machine was busy (from
/proc/stat) and the load average. Needs PostgreSQL at --server; creates and drops
the databases stagehand_bench_paths*.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import backup  # noqa: E402 - the generator and the meters of bench/backup.py

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from apps.backups.engines import pgarchive  # noqa: E402 - its archive reader

SOURCE = "stagehand_bench_paths"
TARGET = "stagehand_bench_paths_restored"
_INT = struct.Struct("<BI")  # pg_dump's int: a sign byte, then 4 bytes, low first
PIECE = 256 * 1024


def fresh_target(server: str) -> None:
    with backup.admin(server) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TARGET}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{TARGET}"')


def pg_restore(server: str, dump: Path, *extra: str) -> None:
    env = {
        **os.environ,
        "PGOPTIONS": "-c synchronous_commit=off -c maintenance_work_mem=256MB",
    }
    subprocess.run(
        ["pg_restore", "--no-owner", "--no-acl", "--exit-on-error", *extra]
        + [f"--dbname={server}/{TARGET}", str(dump)],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def data_blocks(dump: Path) -> list[tuple[int, str, int]]:
    """(compressed size, COPY statement, offset of the first chunk) of every table's
    data, largest first, from the table of contents ``pg_dump -f`` wrote (archive
    1.14, as apps/backups/engines/pgarchive.py reads it)."""
    blocks = []
    with open(dump, "rb") as fh:
        reader = pgarchive._Reader(fh)
        start = reader.take(11)
        reader.off_size = start[9]
        reader.int()  # compression
        for _ in range(7):  # creation time
            reader.int()
        for _ in range(3):  # database name, server version, pg_dump version
            reader.string()
        entries = []
        for _ in range(reader.int()[1]):
            reader.int()  # dump id
            reader.int()  # has data
            _oid, _oid2, _tag, desc = (reader.string()[5:] for _ in range(4))
            reader.int()  # section
            strings = [reader.string()[5:] for _ in range(8)]
            while True:  # dependencies, up to a NULL string
                _raw, length = reader.int()
                if length < 0:
                    break
                reader.take(length)
            flag, offset = reader.take(1)[0], reader.take(reader.off_size)
            if desc == b"TABLE DATA":
                if flag != 2:  # K_OFFSET_POS_SET
                    raise SystemExit(f"{dump} has no data offsets: write it with -f")
                copy = strings[2].decode().strip().rstrip(";")
                entries.append((copy, int.from_bytes(offset, "little")))
        for copy, offset in entries:
            fh.seek(offset + 1 + _INT.size)  # block type, dump id
            first, size = fh.tell(), 0
            while length := _INT.unpack(fh.read(_INT.size))[1]:
                fh.seek(length, os.SEEK_CUR)
                size += length
            blocks.append((size, copy, first))
    return sorted(blocks, reverse=True)


def loader(server: str, dump: Path, jobs: int, compressed: bool) -> None:
    fresh_target(server)
    pg_restore(server, dump, "--section=pre-data")
    work: queue.Queue = queue.Queue()
    for block in data_blocks(dump):
        work.put(block)
    failures: list[BaseException] = []

    def copy_tables() -> None:
        try:
            with (
                psycopg.connect(
                    f"{server}/{TARGET}",
                    autocommit=True,
                    options="-c synchronous_commit=off",
                ) as conn,
                open(dump, "rb") as fh,
            ):
                while True:
                    try:
                        _size, statement, start = work.get_nowait()
                    except queue.Empty:
                        return
                    fh.seek(start)
                    inflate = zlib.decompressobj() if compressed else None
                    with conn.cursor() as cur, cur.copy(statement) as copy:
                        parts, size = [], 0
                        while True:
                            _sign, length = _INT.unpack(fh.read(_INT.size))
                            if length == 0:
                                break
                            parts.append(fh.read(length))
                            size += length
                            if size >= PIECE:
                                piece = b"".join(parts)
                                parts, size = [], 0
                                copy.write(
                                    inflate.decompress(piece) if inflate else piece
                                )
                        piece = b"".join(parts)
                        copy.write(
                            inflate.decompress(piece) + inflate.flush()
                            if inflate
                            else piece
                        )
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=copy_tables) for _ in range(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
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
    """Time ``run``, check what it restored, print the line; return the seconds."""
    started, cpu = time.monotonic(), backup.busy()
    run()
    seconds, cpu = time.monotonic() - started, backup.busy() - cpu
    if contents(server, TARGET) != expected:
        raise SystemExit(f"{label}: the restored database differs from the source")
    ratio = f"{anchor / seconds:.2f}x" if anchor else "anchor"
    print(
        f"  {label:<44} {seconds:6.1f} s {cpu:6.1f} busy core-s  {ratio:>7}  "
        f"[{backup.load()}]",
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
                f"loader: {jobs} COPY streams, zlib in threads",
                lambda: loader(server, compressed, jobs, compressed=True),
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
