"""The backup benchmarks still run as docs/benchmarks.md shows them: each once, on a
database of a few MiB (the figures mean nothing at that size; that they come out
does, as a benchmark that no longer runs only shows on the next measurement)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import server_url
from tests.helpers import bench

pytestmark = pytest.mark.postgres


def test_the_backup_benchmark_compares_both_commands_with_the_raw_tools():
    out = bench(
        "backup.py",
        "--size-mb",
        "2",
        "--repeat",
        "1",
        "--db",
        "stagehand_bench_smoke",
        "--server",
        server_url(),
    )
    assert "backup throughput vs raw pg_dump -Fc to a file: " in out
    assert "restore throughput vs single-job pg_restore of the same file: " in out
    assert "peak RSS of the backup process: " in out
    assert "rounds' ratios, anchor / ours in the same round: backup " in out
    # The server runs on this machine: its processes' work is counted on each side.
    work = next(line for line in out.splitlines() if line.startswith("restore work"))
    assert re.search(r"single-job pg_restore [\d.]+ busy core-s: server \d", work)
    assert re.search(r"manage.py restore [\d.]+ busy core-s: server \d", work)


def test_the_restore_paths_benchmark_restores_the_same_database_every_way():
    # Each way's restored database is compared with the source (rows, a checksum of
    # them, the indexes): the script exits non-zero when one differs.
    out = bench(
        "restore_paths.py", "--size-mb", "2", "--repeat", "1", "--server", server_url()
    )
    for way in ("anchor", "jobs: pg_restore --jobs", "no-inflate:", "loader:"):
        assert way in out
