"""A parallel restore's tables loaded by pgload: the archive's table of contents read,
the data inflated (ISA-L) and COPied FREEZE on several connections, everything else
left to pg_restore, and pg_restore --jobs whole for an archive not read here."""

from __future__ import annotations

import io
import subprocess
import zlib

import psycopg
import pytest
from django.core.management import CommandError
from django.db import connections
from isal import igzip_lib

from apps.accounts.models import User
from apps.backups.engines import pgarchive, pgload, postgresql
from apps.backups.errors import BackupDamaged
from tests.helpers import call

from .conftest import other_databases, take_backup

pytestmark = pytest.mark.postgres

TABLES = ("load_small", "load_big", "load_parts_a", "load_parts_b")


@pytest.fixture
def tables(live):
    """Tables of every kind a restore must carry, dropped afterwards."""
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "CREATE TABLE load_small (id serial PRIMARY KEY, note text);"
            "INSERT INTO load_small (note) VALUES ('tab\tand newline\n'), (NULL), "
            "('quote '' backslash \\ unicode é ☃');"
            "CREATE TABLE load_big (id bigint PRIMARY KEY, body text, extra jsonb, "
            "at timestamptz);"
            "INSERT INTO load_big SELECT g, md5(g::text), "
            "jsonb_build_object('n', g), '2026-12-01'::timestamptz + g * interval '1s' "
            "FROM generate_series(1, 20000) g;"
            "CREATE INDEX load_big_at ON load_big (at);"
            "COMMENT ON INDEX load_big_at IS 'by time';"
            "CREATE TABLE load_parts (id int, region text) PARTITION BY LIST (region);"
            "CREATE TABLE load_parts_a PARTITION OF load_parts FOR VALUES IN ('a');"
            "CREATE TABLE load_parts_b PARTITION OF load_parts FOR VALUES IN ('b');"
            "INSERT INTO load_parts SELECT g, CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END "
            "FROM generate_series(1, 1000) g;"
            "CREATE TABLE load_child (id int REFERENCES load_small (id));"
            "INSERT INTO load_child VALUES (1), (3);"
        )
        cursor.execute("SELECT lo_from_bytea(0, 'a large object')")
        (oid,) = cursor.fetchone()
    yield oid
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "DROP TABLE IF EXISTS load_child, load_small, load_big, load_parts;"
            f"SELECT lo_unlink({oid}) FROM pg_largeobject_metadata WHERE oid = {oid}"
        )


def contents_of_live() -> dict:
    with connections["default"].cursor() as cursor:
        result = {}
        for table in (*TABLES, "load_parts", "load_child"):
            cursor.execute(
                f"SELECT md5(string_agg(t::text, ',' ORDER BY t::text)), "
                f"count(*) FROM {table} t"
            )
            result[table] = cursor.fetchone()
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename LIKE 'load%' ORDER BY 1"
        )
        result["indexes"] = [r[0] for r in cursor.fetchall()]
        cursor.execute("SELECT obj_description('load_big_at'::regclass, 'pg_class')")
        result["comment"] = cursor.fetchone()[0]
        cursor.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'load_child'::regclass"
        )
        result["constraints"] = [r[0] for r in cursor.fetchall()]
    return result


def test_a_parallel_restore_carries_every_kind_of_table(tables, live, backup_root):
    oid = tables
    User.objects.create_user("alice", "alice@example.org", "pw")
    before = contents_of_live()
    name = take_backup()
    with connections["default"].cursor() as cursor:
        cursor.execute("DELETE FROM load_child; DELETE FROM load_big WHERE id > 10")
    User.objects.create_user("bob", "bob@example.org", "pw")

    call("restore", name, "--noinput", "--jobs", "2")

    assert contents_of_live() == before
    assert list(User.objects.values_list("username", flat=True)) == ["alice"]
    with connections["default"].cursor() as cursor:
        cursor.execute(f"SELECT convert_from(lo_get({oid}), 'UTF8')")
        assert cursor.fetchone() == ("a large object",)  # left to pg_restore
        # The sequence values came back too: a new row does not collide.
        cursor.execute("INSERT INTO load_small (note) VALUES ('new') RETURNING id")
        assert cursor.fetchone() == (4,)


def test_entries_beside_the_last_loads_depend_on_no_table_still_loading(
    tables, live, backup_root
):
    """The post-data run beside the last loads: an index or key of a loaded table,
    never the key of a table still loading, nor a foreign key that needs it."""
    name = take_backup()
    path = backup_root / "backup" / name
    contents = pgarchive.read_contents(path)
    listing = subprocess.run(
        ["pg_restore", "-l", str(path)], check=True, capture_output=True, text=True
    ).stdout
    # "123; 1259 16390 INDEX public load_big_at postgres"
    entries = {
        int(line.split(";")[0]): " ".join(line.split()[3:-1])
        for line in listing.splitlines()
        if line and not line.startswith(";")
    }
    data = {t.table: t.dump_id for t in contents.tables}
    assert {"load_small", "load_big", "load_child"} <= set(data)
    # A comment has no section of its own: it is restored after the index.
    (comment,) = (
        i for i, e in entries.items() if e == "COMMENT public INDEX load_big_at"
    )
    assert comment in contents.post_data
    assert comment not in contents.others

    beside = pgload.post_data_beside(
        contents, set(data.values()) - {data["load_small"]}
    )
    named = {entries[dump_id] for dump_id in beside}
    assert {
        "INDEX public load_big_at",
        "CONSTRAINT public load_big load_big_pkey",
    } <= named
    assert not any("load_small" in entry for entry in named)
    # load_child is loaded, but its foreign key needs load_small's key.
    fk = "FK CONSTRAINT public load_child load_child_id_fkey"
    assert fk in entries.values()
    assert fk not in named
    # Everything once every table is loaded; nothing of ours while all still load.
    assert pgload.post_data_beside(contents, set(data.values())) == contents.post_data
    assert not any(
        "load_" in entries[dump_id]
        for dump_id in pgload.post_data_beside(contents, set())
    )


def test_the_restored_tables_are_frozen_and_all_visible(tables, live):
    name = take_backup()
    call("restore", name, "--noinput", "--jobs", "2")
    with connections["default"].cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_visibility")
        try:
            cursor.execute(
                "SELECT all_visible, all_frozen FROM "
                "pg_visibility_map_summary('load_big')"
            )
            visible, frozen = cursor.fetchone()
            cursor.execute("SELECT pg_relation_size('load_big') / 8192")
            (pages,) = cursor.fetchone()
        finally:
            cursor.execute("DROP EXTENSION pg_visibility")
    assert pages > 10
    assert visible == frozen == pages  # COPY FREEZE: nothing left for VACUUM


def test_every_table_is_found_in_both_layouts_of_archive(tables, live, backup_root):
    """Ours (written to a pipe, no data offsets) and pg_dump -f's (offsets set)."""
    name = take_backup()
    ours = pgarchive.read_contents(backup_root / "backup" / name)
    theirs_path = backup_root / "pg_dump.dump"
    settings_dict = connections["default"].settings_dict
    subprocess.run(
        ["pg_dump", "-Fc", f"--dbname={live}", "-f", str(theirs_path)],
        check=True,
        env=postgresql.env(settings_dict),
    )
    theirs = pgarchive.read_contents(theirs_path)
    assert ours.compression == theirs.compression == -1
    assert (ours.encoding, ours.std_strings) == ("UTF8", "on")
    for found in (ours, theirs):
        by_name = {t.table: t for t in found.tables}
        assert set(TABLES) <= set(by_name)
        assert "load_parts" not in by_name  # a partitioned table has no data itself
        assert by_name["load_big"].copy == (
            "COPY public.load_big (id, body, extra, at) FROM stdin"
        )
        assert found.tables[0].table == "load_big"  # largest first
        assert found.others  # the schema, the large object, sequence values
        assert not {t.dump_id for t in found.tables} & set(found.others)
    assert [t.copy for t in ours.tables] == [t.copy for t in theirs.tables]


def test_an_uncompressed_backup_restores_in_parallel(tables, live, backup_root):
    before = contents_of_live()
    name = take_backup("--no-compress")
    assert pgarchive.read_contents(backup_root / "backup" / name).compression == 0
    with connections["default"].cursor() as cursor:
        cursor.execute("DELETE FROM load_child; TRUNCATE load_big")
    call("restore", name, "--noinput", "--jobs", "3")
    assert contents_of_live() == before


def test_an_archive_not_read_here_goes_to_pg_restore_whole(tables, live, monkeypatch):
    before = contents_of_live()
    name = take_backup()

    def unsupported(path):
        raise pgarchive.UnsupportedArchive("archive version 1.16 is not parsed here")

    monkeypatch.setattr(postgresql, "read_contents", unsupported)
    monkeypatch.setattr(pgload, "load", None)  # would fail if it were called
    with connections["default"].cursor() as cursor:
        cursor.execute("DELETE FROM load_child; TRUNCATE load_big")
    call("restore", name, "--noinput", "--jobs", "2")
    assert contents_of_live() == before


def test_a_table_copy_freeze_refuses_is_loaded_without_it(live, tmp_path):
    """A partitioned table's root (pg_dump --load-via-partition-root) takes no FREEZE."""
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "CREATE TABLE load_parts (id int, region text) PARTITION BY LIST (region);"
            "CREATE TABLE load_parts_a PARTITION OF load_parts FOR VALUES IN ('a');"
        )
    try:
        rows = b"1\ta\n2\ta\n"
        path = tmp_path / "block"
        path.write_bytes(pgarchive.write_int(len(rows)) + rows + pgarchive.write_int(0))
        table = pgarchive.TableData(
            1,
            "public",
            "load_parts",
            "COPY public.load_parts (id, region) FROM stdin",
            0,
            len(rows),
        )
        contents = pgarchive.Contents(0, "UTF8", "on", [table], [])
        load_into(live, path, contents, 2)
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT id FROM load_parts_a ORDER BY 1")
            assert cursor.fetchall() == [(1,), (2,)]
    finally:
        with connections["default"].cursor() as cursor:
            cursor.execute("DROP TABLE load_parts")


def test_once_every_load_has_begun_no_table_is_seen_empty(live, tmp_path):
    """What restore starts the index builds on: when ``held(loaded)`` is called,
    every table is either loaded or locked by its load, never empty to another
    session, and every table in ``loaded`` has all its rows."""
    settings_dict = connections["default"].settings_dict
    names = ("load_a", "load_b", "load_c")
    with connections["default"].cursor() as cursor:
        cursor.execute(";".join(f"CREATE TABLE {name} (id int)" for name in names))
    try:
        path = tmp_path / "blocks"
        tables, offset, data = [], 0, b""
        for number, name in enumerate(names, 1):
            rows = b"".join(b"%d\n" % n for n in range(1000 * number))
            block = pgarchive.write_int(len(rows)) + rows + pgarchive.write_int(0)
            copy = f"COPY public.{name} (id) FROM stdin"
            tables.append(
                pgarchive.TableData(number, "public", name, copy, offset, len(rows))
            )
            offset, data = offset + len(block), data + block
        path.write_bytes(data)
        contents = pgarchive.Contents(0, "UTF8", "on", tables, [])
        seen: list[dict] = []
        said: list[frozenset[int]] = []

        def held(loaded: frozenset[int]) -> None:
            said.append(loaded)
            found = {}
            with postgresql.connect(settings_dict, live) as other:
                other.execute("SET lock_timeout = '200ms'")
                for name in names:
                    try:
                        found[name] = other.execute(
                            f"SELECT count(*) FROM {name}"
                        ).fetchone()[0]
                    except psycopg.errors.LockNotAvailable:
                        found[name] = "locked"
            seen.append(found)

        load_into(live, path, contents, 2, held=held)
        assert len(seen) == 1  # once
        full = {name: 1000 * number for number, name in enumerate(names, 1)}
        assert all(seen[0][name] in (full[name], "locked") for name in names)
        # The table whose COPY has just begun (in the thread calling held) at least.
        assert "locked" in seen[0].values()
        # In the list's order (read_contents puts the largest first), on two
        # connections: load_c begins last, so it is not loaded yet.
        assert 3 not in said[0]
        for number, name in enumerate(names, 1):
            if number in said[0]:
                assert seen[0][name] == full[name]
        with connections["default"].cursor() as cursor:
            for name in names:
                cursor.execute(f"SELECT count(*) FROM {name}")
                assert cursor.fetchone() == (full[name],)
    finally:
        with connections["default"].cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {', '.join(names)}")


def test_data_that_does_not_inflate_is_a_damaged_backup(live, tmp_path):
    with connections["default"].cursor() as cursor:
        cursor.execute("CREATE TABLE load_small (id int)")
    try:
        garbage = b"\x78\x9c not deflate at all"
        path = tmp_path / "block"
        path.write_bytes(
            pgarchive.write_int(len(garbage)) + garbage + pgarchive.write_int(0)
        )
        table = pgarchive.TableData(
            1, "public", "load_small", "COPY public.load_small (id) FROM stdin", 0, 1
        )
        contents = pgarchive.Contents(-1, "UTF8", "on", [table], [])
        with pytest.raises(
            BackupDamaged, match="rows of public.load_small do not load"
        ):
            load_into(live, path, contents, 2)
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT count(*) FROM load_small")
            assert cursor.fetchone() == (0,)
    finally:
        with connections["default"].cursor() as cursor:
            cursor.execute("DROP TABLE load_small")


def test_a_failed_load_leaves_the_live_database(tables, live, monkeypatch):
    before = contents_of_live()
    name = take_backup()
    with connections["default"].cursor() as cursor:
        cursor.execute("DELETE FROM load_child; DELETE FROM load_big WHERE id > 10")
    changed = contents_of_live()
    real = pgload._copy

    def dies_on_big(conn, fh, table, *args):
        if table.table == "load_big":
            conn.close()  # the connection lost half way
        return real(conn, fh, table, *args)

    monkeypatch.setattr(pgload, "_copy", dies_on_big)
    with pytest.raises(CommandError, match="loading the tables' data into the new"):
        call("restore", name, "--noinput", "--jobs", "2")
    assert contents_of_live() == changed != before
    assert other_databases(live) == []


def load_into(live: str, path, contents, jobs: int, **options) -> None:
    """pgload.load of the archive at ``path`` into the live database."""
    settings_dict = connections["default"].settings_dict
    pgload.load(
        path, contents, lambda: postgresql.connect(settings_dict, live), jobs, **options
    )


def blocks(chunks: list[bytes]) -> bytes:
    """A table's data as an archive holds it: each chunk after its length, then 0."""
    return b"".join(pgarchive.write_int(len(c)) + c for c in chunks) + (
        pgarchive.write_int(0)
    )


def test_isal_inflates():
    assert pgload._igzip is igzip_lib  # requirements/base.txt has it


@pytest.mark.parametrize("inflater", ["isal", "zlib"])
def test_every_row_arrives_whichever_inflater(live, tmp_path, monkeypatch, inflater):
    """Rows that compress 100-fold, in chunks that each inflate to many pieces: with
    ISA-L, and with zlib where isal is not installed."""
    if inflater == "zlib":
        monkeypatch.setattr(pgload, "_igzip", None)
    with connections["default"].cursor() as cursor:
        cursor.execute("CREATE TABLE load_small (id int, note text)")
    try:
        rows = b"".join(b"%d\t%s\n" % (n, b"same words " * 20) for n in range(50000))
        compressed = zlib.compress(rows, 6)
        assert len(rows) > 60 * len(compressed)
        chunks = [compressed[i : i + 4000] for i in range(0, len(compressed), 4000)]
        path = tmp_path / "block"
        path.write_bytes(blocks(chunks))
        table = pgarchive.TableData(
            1,
            "public",
            "load_small",
            "COPY public.load_small (id, note) FROM stdin",
            0,
            1,
        )
        contents = pgarchive.Contents(-1, "UTF8", "on", [table], [])
        load_into(live, path, contents, 1)
        with connections["default"].cursor() as cursor:
            cursor.execute(
                "SELECT count(*), min(id), max(id), count(DISTINCT note) FROM load_small"
            )
            assert cursor.fetchone() == (50000, 0, 49999, 1)
        # Cut short: the stream's end is missing.
        path.write_bytes(blocks(chunks[:-1]))
        with pytest.raises(BackupDamaged, match="ends early"):
            load_into(live, path, contents, 1)
    finally:
        with connections["default"].cursor() as cursor:
            cursor.execute("DROP TABLE load_small")


def test_a_chunk_longer_than_any_pg_dump_writes_is_damage_not_an_allocation(
    live, tmp_path
):
    with connections["default"].cursor() as cursor:
        cursor.execute("CREATE TABLE load_small (id int)")
    try:
        path = tmp_path / "block"
        path.write_bytes(pgarchive.write_int(2**32 - 1) + b"\x78\x9c")
        table = pgarchive.TableData(
            1, "public", "load_small", "COPY public.load_small (id) FROM stdin", 0, 1
        )
        contents = pgarchive.Contents(-1, "UTF8", "on", [table], [])
        with pytest.raises(BackupDamaged, match="a chunk of 4294967295 bytes"):
            load_into(live, path, contents, 1)
    finally:
        with connections["default"].cursor() as cursor:
            cursor.execute("DROP TABLE load_small")


def test_names_in_another_encoding_leave_the_archive_to_pg_restore():
    latin1 = pgarchive.write_int(4) + "café".encode("latin-1")
    with pytest.raises(pgarchive.UnsupportedArchive, match="not UTF-8"):
        pgarchive._text(latin1)
    assert pgarchive._text(pgarchive.write_int(5) + "café".encode()) == "café"


def test_a_dependency_that_is_no_dump_id_is_a_damaged_table_of_contents():
    """read_contents raises ArchiveError, and restore hands such an archive to
    pg_restore whole (see test_an_archive_not_read_here_goes_to_pg_restore_whole)."""

    def reader(*strings: bytes) -> pgarchive._Reader:
        raw = b"".join(pgarchive.write_int(len(s)) + s for s in strings)
        return pgarchive._Reader(io.BytesIO(raw + pgarchive.write_int(-1)))

    assert list(pgarchive._dependencies(reader(b"12", b"345"))) == [12, 345]
    with pytest.raises(pgarchive.ArchiveError, match="no dump id"):
        list(pgarchive._dependencies(reader(b"12", b"x\x00")))
