"""pgarchive: pg_dump's uncompressed custom archive, compressed on every core.

Against the real pg_dump and pg_restore: the archive it makes must be the one
``pg_dump --format=custom`` makes with its default compression, as pg_restore sees it.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import threading
import zlib

import pytest
from django.core.management import CommandError
from django.db import connections
from hypothesis import given
from hypothesis import strategies as st

from apps.backups.engines import pgarchive, postgresql
from tests.helpers import call

from .conftest import files_under, other_databases, take_backup

pytestmark = pytest.mark.postgres


@pytest.fixture
def tables(live):
    """Data over several pieces, an empty table and two large objects."""
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "CREATE TABLE backup_probe (id int PRIMARY KEY, body text);"
            "INSERT INTO backup_probe SELECT g, md5(g::text) || repeat(md5((g * 7)"
            "::text), 2) FROM generate_series(1, 40000) g;"
            "CREATE TABLE backup_probe_limits (id int)"
        )
        cursor.execute(
            "SELECT lo_from_bytea(0, 'a small object'::bytea),"
            " lo_from_bytea(0, convert_to(repeat(md5('x'), 100000), 'UTF8'))"
        )
        oids = cursor.fetchone()
    yield live
    with connections["default"].cursor() as cursor:
        for oid in oids:
            cursor.execute("SELECT lo_unlink(%s)", [oid])


def pg_dump(*args: str) -> bytes:
    settings_dict = connections["default"].settings_dict
    return subprocess.run(
        ["pg_dump", "--format=custom", f"--dbname={settings_dict['NAME']}", *args],
        env=postgresql.env(settings_dict),
        capture_output=True,
        check=True,
    ).stdout


def pg_restore(archive: bytes, *args: str) -> str:
    text = subprocess.run(
        ["pg_restore", *args, "--file=-"],
        input=archive,
        capture_output=True,
        check=True,
    ).stdout.decode()
    # pg_restore's script guard differs at random on every run.
    return re.sub(r"(?m)^\\(un)?restrict .*$", "", text)


def compressed(archive: bytes, threads: int = 2) -> bytes:
    out = io.BytesIO()
    pgarchive.compress_archive(io.BytesIO(archive), out, threads=threads)
    return out.getvalue()


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_the_archive_is_what_pg_dump_compresses(tables, threads):
    plain = pg_dump("--compress=0")
    assert len(plain) > 3 * pgarchive.PIECE  # the table spans several pieces
    ours = compressed(plain, threads)
    theirs = pg_dump()  # pg_dump's default compression
    listing = pg_restore(ours, "--list")
    assert re.search(r"(?m)^;\s+Compression: -1$", listing)
    assert "BLOBS" in listing
    assert pg_restore(ours) == pg_restore(theirs) == pg_restore(plain)
    assert abs(len(ours) - len(theirs)) < len(theirs) * 0.02


def test_an_archive_that_ends_early_is_refused(tables):
    plain = pg_dump("--compress=0")
    for cut in (3, 40, len(plain) // 2, len(plain) - 1):
        with pytest.raises(pgarchive.ArchiveError, match="truncated"):
            compressed(plain[:cut])


def test_another_version_or_a_compressed_archive_writes_nothing(tables):
    plain = bytearray(pg_dump("--compress=0"))
    plain[6] = 99  # the minor version byte after PGDMP and the major one
    for archive in (bytes(plain), pg_dump(), b"not an archive at all"):
        out = io.BytesIO()
        with pytest.raises(pgarchive.UnsupportedArchive):
            pgarchive.compress_archive(io.BytesIO(archive), out)
        assert out.getvalue() == b""


@given(st.binary(max_size=3000), st.binary(max_size=3000))
def test_adler32_combine_is_zlibs(first, second):
    assert pgarchive.adler32_combine(
        zlib.adler32(first), zlib.adler32(second), len(second)
    ) == zlib.adler32(first + second)


def test_backup_lets_pg_dump_compress_an_archive_version_not_parsed_here(
    tables, backup_root, monkeypatch
):
    monkeypatch.setattr(pgarchive, "SUPPORTED", set())
    name = take_backup()
    dump = (backup_root / "backup" / name).read_bytes()
    assert re.search(r"(?m)^;\s+Compression: -1$", pg_restore(dump, "--list"))
    assert json.loads((backup_root / "backup" / f"{name}.json").read_text())[
        "compressed"
    ]
    assert pg_restore(dump) == pg_restore(pg_dump())


def test_a_bad_restore_memory_setting_says_what_to_set(live, settings):
    name = take_backup()
    settings.BACKUP_RESTORE_MAINTENANCE_WORK_MEM = "lots of it"
    with pytest.raises(
        CommandError, match="BACKUP_RESTORE_MAINTENANCE_WORK_MEM is 'lots of it'.*256MB"
    ):
        call("restore", name, "--noinput")
    assert other_databases(live) == []
    # Beyond what PostgreSQL takes, below it, digits of another script:
    # refused before a database is made, not by pg_restore half way.
    for bad in ("2048TB", "9223372036854775808", "512kB", "２５６MB"):
        settings.BACKUP_RESTORE_MAINTENANCE_WORK_MEM = bad
        with pytest.raises(CommandError, match="from 1MB to 2TB"):
            call("restore", name, "--noinput")
        assert other_databases(live) == []


def test_pg_dump_stopped_half_way_fails_with_its_own_error(live, backup_root):
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "CREATE TABLE backup_probe (id int PRIMARY KEY, body text);"
            "INSERT INTO backup_probe SELECT g, repeat(md5(g::text), 4)"
            " FROM generate_series(1, 600000) g"
        )
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            call("backup")
        except BaseException as exc:  # noqa: BLE001 - the test reads it below
            outcome["error"] = exc
        finally:
            connections.close_all()  # this thread's own

    thread = threading.Thread(target=run)
    thread.start()
    terminated = False
    with postgresql.connect(connections["default"].settings_dict, live) as conn:
        while thread.is_alive() and not terminated:
            terminated = bool(
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'pg_dump'"
                    " AND query LIKE 'COPY public.backup_probe %%'"
                ).fetchall()
            )
    thread.join()
    assert terminated, "the dump ended before its COPY could be stopped"
    assert isinstance(outcome.get("error"), CommandError)
    assert re.search(r"pg_dump failed \(exit 1\).*backup_probe", str(outcome["error"]))
    assert files_under(backup_root) == []
