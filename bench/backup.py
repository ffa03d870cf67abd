"""Benchmark: `backup` and `restore` against raw pg_dump / pg_restore in the same run.

    .venv/bin/python bench/backup.py --size-mb 1024 [--s3]

Generates a PostgreSQL database of at least --size-mb (pg_database_size), then times

* backup: anchor ``pg_dump --format=custom -f FILE`` to a local file, against
  ``manage.py backup`` into the local backups folder (and, with --s3, into an S3
  bucket on a moto server started on loopback); target >= 1.0x;
* restore: anchor a single-job ``pg_restore`` of the very file ``manage.py backup``
  wrote into an empty database, against ``manage.py restore latest`` with as many
  jobs as cores (into a new database: the schema by ``pg_restore``, the tables' data
  by the command on that many connections, the indexes by ``pg_restore --jobs``, the
  file's SHA-256 read beside; then the swap); target >= 1.5x.

The two sides alternate within each round, so load from elsewhere hurts both; the
load average is printed beside every figure, and so are the core-seconds the whole
machine was busy during each run (from /proc/stat): the restore's ceiling on this
machine follows from the anchor's. Each restore's core-seconds are split between
the client (the command and the pg_restore runs it waited for) and the server (every
process of the PostgreSQL server, when it runs on this machine: the postmaster's
children, live and exited). Prints throughput ratios (anchor time /
our time) and the peak resident memory of the `backup` and `restore` processes
(target < 150 MB whatever the size): each is a child of this script, and its peak
comes from wait4(), which on Linux reports the largest of the process and the
pg_dump / pg_restore processes it waited for.

The database is four tables of about equal size (chat messages, events, attendees'
activity, audit log), each with an index besides its key, as a Stagehand database
has many tables: pg_restore --jobs restores tables and builds indexes side by side,
but one table's data is always a single COPY.

Needs PostgreSQL at --server (default postgres://postgres@127.0.0.1:5432) and
creates and drops the databases stagehand_bench_backup*.
"""

from __future__ import annotations

import argparse
import operator
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apps.ops import backend as processes  # noqa: E402 - /proc, as `backend` reads it

DB = "stagehand_bench_backup"
RAW = "stagehand_bench_backup_raw"


def admin(server: str) -> psycopg.Connection:
    return psycopg.connect(f"{server}/postgres", autocommit=True)


def drop_all(server: str) -> None:
    with admin(server) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s",
                [DB.replace("_", r"\_") + "%"],
            )
        ]
        for name in names:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def drop_kept(server: str) -> None:
    """Drop the databases restore kept for a rollback."""
    with admin(server) as conn:
        for (name,) in conn.execute(
            "SELECT datname FROM pg_database WHERE datname ~ %s",
            ["^" + DB + "_before_[0-9]{14}$"],
        ).fetchall():
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


TABLES = ("chat_message", "event", "activity", "audit")


def generate(server: str, size_mb: int) -> int:
    """Create DB with realistic rows (text, numbers, JSON, an index) of >= size_mb."""
    with admin(server) as conn:
        conn.execute(f'CREATE DATABASE "{DB}"')
    with psycopg.connect(f"{server}/{DB}", autocommit=True) as conn:
        for table in TABLES:
            conn.execute(
                f"CREATE TABLE {table} (id bigint PRIMARY KEY, at timestamptz, "
                "room int, author text, body text, extra jsonb)"
            )
        # 100,000 rows a table at a time; fewer for a small database (a smoke run).
        batch = max(1_000, min(100_000, size_mb * 100))
        start = 0
        while True:
            for table in TABLES:
                conn.execute(
                    f"INSERT INTO {table} SELECT g, now() - g * interval '1 second', "
                    "g %% 997, 'user-' || (g %% 50021), "
                    "md5(g::text) || ' ' || repeat(md5((g * 7)::text), 3) || ' ' || "
                    "substr(md5(random()::text), 1, (random() * 32)::int), "
                    "jsonb_build_object('n', g, 'tag', md5((g %% 101)::text)) "
                    "FROM generate_series(%s::bigint, %s::bigint) g",
                    [start + 1, start + batch],
                )
            start += batch
            size = conn.execute(
                "SELECT pg_database_size(current_database())"
            ).fetchone()[0]
            if size >= size_mb * 1024 * 1024:
                break
        for table in TABLES:
            conn.execute(f"CREATE INDEX {table}_room ON {table} (room, at)")
            conn.execute(f"VACUUM ANALYZE {table}")
        # Write the freshly generated pages out now, or the checkpointer does it
        # during the first timed run and slows that one down.
        conn.execute("CHECKPOINT")
        return conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]


def busy() -> float:
    """Core-seconds the whole machine has spent busy (not idle nor waiting on I/O)."""
    with open("/proc/stat") as fh:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(
            int, fh.readline().split()[1:9]
        )
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def postmaster(server: str) -> int | None:
    """The pid of the PostgreSQL server's postmaster when it runs on this machine and
    its /proc entries can be read (a backend's parent), else None."""
    with admin(server) as conn:  # read while connected: the backend exits after
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        try:
            with open(f"/proc/{backend}/cmdline", "rb") as fh:
                if not fh.read().startswith(b"postgres: "):
                    return None  # a namesake's pid: the server is in a container
        except OSError:
            return None  # on another machine
        stat = processes.read_stat(backend)
    return stat["ppid"] if stat and processes.read_stat(stat["ppid"]) else None


def server_cpu(pid: int | None) -> float | None:
    """Core-seconds the server's processes have used: the postmaster's, its live
    children's (checkpointer, WAL writer, backends) and those of its children that
    have exited (a run's backends, once it disconnected)."""
    stat = processes.read_stat(pid) if pid is not None else None
    if stat is None:
        return None
    ticks = stat["cpu_ticks"] + stat["children_cpu_ticks"]
    for child in processes.descendants(pid):
        # One that exited meanwhile is counted in children_cpu_ticks, or about to be.
        if child_stat := processes.read_stat(child):
            ticks += child_stat["cpu_ticks"]
    return ticks / os.sysconf("SC_CLK_TCK")


class Run(NamedTuple):
    seconds: float
    rss: int  # peak resident memory in bytes (wait4: the command or its children)
    busy: float  # the machine's busy core-seconds meanwhile, anyone else's included
    client: float  # core-seconds of the command and the children it waited for
    server: float | None  # of the PostgreSQL server's processes, when it is local

    def split(self) -> str:
        server = "?" if self.server is None else f"{self.server:.1f}"
        return f"{self.busy:.1f} busy core-s: server {server}, client {self.client:.1f}"


def timed(args: list[str], env: dict | None = None, server: int | None = None) -> Run:
    """Run a command; return its time, peak RSS and the core-seconds spent meanwhile
    by the machine, the command and the server (the postmaster ``server``)."""
    before = server_cpu(server)
    started, cpu = time.monotonic(), busy()
    process = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(process.pid, 0)
    elapsed = time.monotonic() - started
    cpu = busy() - cpu
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{args[0]} … exited {code}")
    time.sleep(0.2)  # the run's backends exit once it disconnected: count them all
    after = server_cpu(server)
    return Run(
        elapsed,
        usage.ru_maxrss * 1024,
        cpu,
        usage.ru_utime + usage.ru_stime,
        None if before is None or after is None else after - before,
    )


def per_round(anchors: list[float], ours: list[float]) -> str:
    """Each round's ratio (anchor time / our time), and their median."""
    ratios = [anchor / our for anchor, our in zip(anchors, ours, strict=True)]
    listed = ", ".join(f"{ratio:.2f}x" for ratio in ratios)
    return f"{listed} (median {statistics.median(ratios):.2f}x)"


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--s3", action="store_true", help="also back up to moto S3")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of each")
    parser.add_argument(
        "--db",
        default="stagehand_bench_backup",
        help="name of the generated database (default stagehand_bench_backup)",
    )
    options = parser.parse_args()
    global DB, RAW  # noqa: PLW0603 - one name for every helper above
    DB, RAW = options.db, options.db + "_raw"

    work = Path(tempfile.mkdtemp(prefix="stagehand-bench-backup-"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": f"{options.server}/{DB}",
        "STAGEHAND_VAR_DIR": str(work / "var"),
    }
    for name in ("AWS_STORAGE_BUCKET_NAME", "REDIS_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)
    python = sys.executable
    moto = None
    try:
        drop_all(options.server)
        t0 = time.monotonic()
        size = generate(options.server, options.size_mb)
        print(
            f"database: {size / 2**20:.0f} MiB generated in "
            f"{time.monotonic() - t0:.0f} s",
            flush=True,
        )

        # Raw and ours alternate, --repeat times each, and the best time of each
        # counts: the first reader of a freshly generated table pays for the cold
        # cache (and for setting hint bits), whichever it is.
        raw_file = work / "raw.dump"
        raw_dumps: list[float] = []
        our_dumps: list[float] = []
        ours_rss = restore_rss = raw_dump_rss = 0
        for round_ in range(1, options.repeat + 1):
            raw_file.unlink(missing_ok=True)
            raw = timed(
                [
                    "pg_dump",
                    "--format=custom",
                    f"--dbname={options.server}/{DB}",
                    "-f",
                    str(raw_file),
                ]
            )
            raw_dumps.append(raw.seconds)
            raw_dump_rss = max(raw_dump_rss, raw.rss)
            our = timed([python, "manage.py", "backup"], env)
            our_dumps.append(our.seconds)
            ours_rss = max(ours_rss, our.rss)
            print(
                f"round {round_}: raw pg_dump {raw.seconds:.1f} s ({raw.busy:.1f} "
                f"busy core-s), manage.py backup {our.seconds:.1f} s "
                f"({our.busy:.1f} busy core-s, peak RSS {our.rss / 2**20:.0f} MiB) "
                f"[{load()}]",
                flush=True,
            )
        dump_size = raw_file.stat().st_size
        # The anchor restores the very file `backup` wrote (the newest).
        ours_file = max((work / "var" / "backups" / "backup").glob("*.dump"))

        pid = postmaster(options.server)
        anchors: list[Run] = []
        ours: list[Run] = []
        for round_ in range(1, options.repeat + 1):
            with admin(options.server) as conn:
                conn.execute(f'CREATE DATABASE "{RAW}"')
            anchor = timed(
                [
                    "pg_restore",
                    "--no-owner",
                    "--no-acl",
                    "--exit-on-error",
                    f"--dbname={options.server}/{RAW}",
                    str(ours_file),
                ],
                server=pid,
            )
            anchors.append(anchor)
            with admin(options.server) as conn:
                conn.execute(f'DROP DATABASE "{RAW}" WITH (FORCE)')
            our = timed(
                [python, "manage.py", "restore", "latest", "--noinput"], env, pid
            )
            ours.append(our)
            restore_rss = max(restore_rss, our.rss)
            drop_kept(options.server)
            print(
                f"round {round_}: raw single-job pg_restore {anchor.seconds:.1f} s "
                f"({anchor.split()}), manage.py restore (--jobs {os.cpu_count()}) "
                f"{our.seconds:.1f} s ({our.split()}, peak RSS "
                f"{our.rss / 2**20:.0f} MiB) [{load()}]",
                flush=True,
            )
        raw_restores = [run.seconds for run in anchors]
        our_restores = [run.seconds for run in ours]
        startup = min(
            timed([python, "manage.py", "check"], env).seconds for _ in range(2)
        )
        raw_dump, ours_dump = min(raw_dumps), min(our_dumps)
        raw_restore, ours_restore = min(raw_restores), min(our_restores)

        s3_line = ""
        if options.s3:
            port = free_port()
            moto = subprocess.Popen(
                [python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            s3_env = {
                **env,
                "AWS_STORAGE_BUCKET_NAME": "stagehand-bench",
                "AWS_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_S3_REGION_NAME": "us-east-1",
            }
            s3 = timed([python, "manage.py", "backup"], s3_env)
            s3_dump, s3_rss = s3.seconds, s3.rss
            s3_line = (
                f"\nbackup to S3 (moto on loopback): {raw_dump / s3_dump:.2f}x raw "
                f"({s3_dump:.1f} s), peak RSS {s3_rss / 2**20:.0f} MiB [{load()}]"
            )

        print()
        print(
            f"RESULT database {size / 2**20:.0f} MiB, dump {dump_size / 2**20:.0f} MiB"
        )
        print(
            f"backup throughput vs raw pg_dump -Fc to a file: "
            f"{raw_dump / ours_dump:.2f}x (target >= 1.0) [{load()}]"
        )
        print(
            f"restore throughput vs single-job pg_restore of the same file: "
            f"{raw_restore / ours_restore:.2f}x (target >= 1.5) [{load()}]"
        )
        # Each round's two sides ran a minute apart; the best times may come from
        # rounds far apart, on a machine whose speed moves (docs/benchmarks.md).
        print(
            "rounds' ratios, anchor / ours in the same round: backup "
            + per_round(raw_dumps, our_dumps)
            + "; restore "
            + per_round(raw_restores, our_restores)
        )
        # pg_restore's work (its decompression, the server's COPY, the index builds,
        # WAL) takes the same core-seconds however many jobs share it; on N cores
        # it cannot take less than that / N.
        quietest = min(run.busy for run in anchors)
        floor = quietest / (os.cpu_count() or 1)
        print(
            f"restore ceiling: single-job pg_restore keeps the machine busy "
            f"{quietest:.1f} core-s (quietest round, anyone else's "
            f"work included), >= {floor:.1f} s on {os.cpu_count()} cores: at most "
            f"{raw_restore / floor:.2f}x for the same work, before start-up"
        )
        # Where the work is: the server's share is the same for any client, and on
        # a machine of few cores it bounds how much faster a restore can be.
        fastest = operator.attrgetter("seconds")
        anchor, our = min(anchors, key=fastest), min(ours, key=fastest)
        print(
            f"restore work in the fastest rounds: single-job pg_restore "
            f"{anchor.split()}; manage.py restore {our.split()} (client: the "
            f"command and its pg_restore runs; server: every PostgreSQL process"
            + ("" if pid is not None else ", not on this machine: not counted")
            + ")"
        )
        print(
            f"peak RSS of the backup process: {ours_rss / 2**20:.0f} MiB, of restore "
            f"{restore_rss / 2**20:.0f} MiB (target < 150 MiB; raw pg_dump "
            f"{raw_dump_rss / 2**20:.0f} MiB)" + s3_line
        )
        print(
            f"best of {options.repeat}: raw dump {raw_dump:.1f} s, backup "
            f"{ours_dump:.1f} s, raw restore {raw_restore:.1f} s, restore "
            f"{ours_restore:.1f} s; startup of manage.py alone {startup:.1f} s"
        )
    finally:
        if moto is not None:
            moto.terminate()
            moto.wait()
        drop_all(options.server)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
