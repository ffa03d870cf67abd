"""backup / restore against the real PostgreSQL with real pg_dump and pg_restore.

The live database here is the test database itself: restore swaps its name, so the
test database still exists (with the restored data) when pytest-django tears it down.
"""

from __future__ import annotations

import json
import re
import threading

import psycopg
import pytest
from django.core.management import CommandError
from django.db import connections

from apps.accounts.models import User
from apps.backups import services
from apps.backups.engines import pgload, postgresql
from tests.helpers import call

from .conftest import (
    SQLITE_ALIAS,
    add_database,
    bucket_keys,
    files_under,
    other_databases,
    remove_database,
    take_backup,
)

pytestmark = pytest.mark.postgres


def snapshot() -> list[tuple]:
    return list(
        User.objects.order_by("pk").values_list("pk", "username", "email", "is_staff")
    )


def make_users() -> None:
    for name in ("alice", "bob", "carol"):
        User.objects.create_user(
            name, f"{name}@example.org", "pw", is_staff=name == "alice"
        )


def test_round_trip_restores_the_snapshot_row_for_row(live, backup_root):
    make_users()
    before = snapshot()
    name = take_backup()
    assert name.startswith("postgresql-backup-") and name.endswith(".dump")
    assert files_under(backup_root) == [f"backup/{name}", f"backup/{name}.json"]
    metadata = services.verify(name, checksum=True).metadata
    assert metadata["engine"] == "postgresql"
    assert metadata["server_version"].split(".")[0].isdigit()

    User.objects.filter(username="bob").delete()
    User.objects.filter(username="carol").update(email="changed@example.org")
    User.objects.create_user("dave", "dave@example.org", "pw")
    assert snapshot() != before

    # Another session on the live database: restore ends it to swap the names.
    bystander = postgresql.connect(connections["default"].settings_dict, live)
    try:
        output = call("restore", "latest", "--noinput")
        with pytest.raises(psycopg.OperationalError):
            bystander.execute("SELECT 1")
    finally:
        bystander.close()
    assert snapshot() == before
    assert f"Restored default from {name}." in output

    kept = other_databases(live)
    assert len(kept) == 1 and kept[0].startswith(f"{live}_before_")
    assert f'DROP DATABASE "{kept[0]}"' in output
    settings_dict = connections["default"].settings_dict
    with postgresql.connect(settings_dict, kept[0]) as conn:
        usernames = [r[0] for r in conn.execute("SELECT username FROM accounts_user")]
    assert "dave" in usernames and "bob" not in usernames


def test_dry_run_changes_nothing(live):
    make_users()
    name = take_backup("--no-compress")
    User.objects.all().delete()
    output = call("restore", name, "--dry-run")
    assert "Dry run" in output and "would be kept" in output
    assert snapshot() == []
    assert other_databases(live) == []


def test_backup_taken_while_writes_continue_restores_consistently(live):
    with connections["default"].cursor() as cursor:
        cursor.execute("CREATE TABLE backup_pair (id serial PRIMARY KEY, grp int)")
    settings_dict = connections["default"].settings_dict
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        with postgresql.connect(settings_dict, live) as conn:
            group = 0
            while not stop.is_set() and group < 1_000_000:
                group += 1
                with conn.transaction():  # both rows of a group, or neither
                    conn.execute("INSERT INTO backup_pair (grp) VALUES (%s)", [group])
                    conn.execute("INSERT INTO backup_pair (grp) VALUES (%s)", [group])
                written.append(group)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 50 and thread.is_alive():
            stop.wait(0.01)
        name = take_backup()
        during = len(written)
        while len(written) < during + 50 and thread.is_alive():
            stop.wait(0.01)
    finally:
        stop.set()
        thread.join()

    call("restore", name, "--noinput")
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT grp, count(*) FROM backup_pair GROUP BY grp")
        counts = dict(cursor.fetchall())
    assert counts, "the backup caught none of the writes"
    assert set(counts.values()) == {2}
    assert sorted(counts) == list(range(1, len(counts) + 1))
    assert len(counts) < len(written)


# Faults: each leaves the live database exactly as it was and storage clean ----------


def test_pg_dump_failing_leaves_nothing_in_storage(live, backup_root):
    broken = dict(connections["default"].settings_dict, USER="no_such_role_for_backup")
    add_database("backup_broken", broken)
    try:
        with pytest.raises(
            CommandError, match="pg_dump failed.*no_such_role_for_backup"
        ):
            call("backup", "--database", "backup_broken")
    finally:
        remove_database("backup_broken")
    assert files_under(backup_root) == []


def test_pg_dump_gives_up_on_a_held_lock_and_leaves_nothing(
    live, backup_root, settings
):
    settings.BACKUP_LOCK_WAIT_TIMEOUT = 1
    # A migration in another session holds an exclusive lock on a table.
    with postgresql.connect(connections["default"].settings_dict, live) as other:
        other.execute("BEGIN")
        other.execute("LOCK TABLE accounts_user IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(
            CommandError, match="(?s)LOCK TABLE.*BACKUP_LOCK_WAIT_TIMEOUT"
        ):
            call("backup")
        other.execute("ROLLBACK")
    assert files_under(backup_root) == []
    assert take_backup()  # the lock gone, the same command succeeds


def test_truncated_backup_is_refused(live, backup_root):
    make_users()
    before = snapshot()
    name = take_backup()
    dump = backup_root / "backup" / name
    dump.write_bytes(dump.read_bytes()[:-100])
    with pytest.raises(CommandError, match="truncated"):
        call("restore", name, "--noinput")
    assert snapshot() == before
    assert other_databases(live) == []


def test_wrong_checksum_is_refused_before_the_swap(live, backup_root):
    make_users()
    name = take_backup("--no-compress")
    User.objects.filter(username="bob").delete()
    before = snapshot()
    dump = backup_root / "backup" / name
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0x01
    dump.write_bytes(bytes(data))
    with pytest.raises(CommandError, match="checksum"):
        call("restore", name, "--noinput")
    assert snapshot() == before
    assert other_databases(live) == []


def test_rows_that_do_not_inflate_are_reported_as_a_checksum_mismatch(
    live, backup_root
):
    """The checksum is read beside the load: damage that the load meets first is
    still reported as the damaged backup it is, not as rows the server refused."""
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "CREATE TABLE backup_probe (id int PRIMARY KEY, body text);"
            "INSERT INTO backup_probe SELECT g, md5(g::text) || md5((g * 7)::text)"
            " FROM generate_series(1, 200000) g"
        )
    name = take_backup()
    dump = backup_root / "backup" / name
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside backup_probe's compressed rows
    dump.write_bytes(bytes(data))
    with pytest.raises(CommandError, match="does not match its checksum"):
        call("restore", name, "--noinput", "--jobs", "2")
    assert other_databases(live) == []


@pytest.mark.parametrize(
    ("jobs", "probe"), [("1", "alone"), ("2", "beside others"), ("2", "alone")]
)
def test_index_builds_run_with_the_restore_session_settings(
    live, jobs, probe, monkeypatch
):
    """An index whose expression reports the settings of the session building it,
    in the new database only: pg_restore's sessions are the restore's own.

    With two jobs, the post-data entries are restored in two runs (pgload.
    post_data_beside): the tables loaded once every load has begun, then the rest.
    Which tables those are is the load's timing; here the load is told to report
    either no table loaded (the probe's index built beside the others') or every
    table but the probe (its index the last run's only build).
    """
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "CREATE TABLE backup_probe (v int);"
            "INSERT INTO backup_probe VALUES (1);"
            "CREATE FUNCTION backup_probe_settings(v int) RETURNS int IMMUTABLE "
            "LANGUAGE plpgsql AS $$ BEGIN "
            f"IF current_database() <> '{live}' THEN RAISE EXCEPTION "
            "'index built with %/%/%', current_setting('synchronous_commit'), "
            "current_setting('maintenance_work_mem'), "
            "current_setting('max_parallel_maintenance_workers'); END IF; "
            "RETURN v; END $$;"
            "CREATE INDEX backup_probe_settings_idx ON backup_probe "
            "(backup_probe_settings(v));"
        )
        cursor.execute("SHOW max_parallel_maintenance_workers")
        server_workers = cursor.fetchone()[0]
    name = take_backup()
    load = pgload.load

    def reporting(path, contents, connect, jobs, *, held, **options):
        others = frozenset(
            t.dump_id for t in contents.tables if t.table != "backup_probe"
        )
        said = frozenset() if probe == "beside others" else others
        return load(path, contents, connect, jobs, held=lambda _: held(said), **options)

    monkeypatch.setattr(pgload, "load", reporting)
    # Builds side by side are the parallelism: no parallel workers of their own.
    # A build alone (one job's, or the last table's) keeps the server's.
    workers = "0" if probe == "beside others" else server_workers
    with pytest.raises(CommandError, match=f"index built with off/512MB/{workers}\\b"):
        call("restore", name, "--noinput", "--jobs", jobs)
    assert other_databases(live) == []


def test_wrong_engine_is_refused(live, sqlite_db):
    make_users()
    before = snapshot()
    output = call("backup", "--database", SQLITE_ALIAS)
    name = output.split(" to ", 1)[1].split(" ", 1)[0]
    with pytest.raises(
        CommandError, match="sqlite backup and database 'default' is postgresql"
    ):
        call("restore", name, "--noinput")
    assert snapshot() == before
    assert other_databases(live) == []


def test_missing_backup_is_refused(live):
    with pytest.raises(CommandError, match="there is no backup"):
        call("restore", "postgresql-backup-20000101000000.dump", "--noinput")
    with pytest.raises(CommandError, match="not a backup name"):
        call("restore", "../../etc/passwd", "--noinput")
    assert other_databases(live) == []


@pytest.mark.parametrize(
    ("jobs", "failure"),
    [
        ("1", "pg_restore failed"),  # streamed into one pg_restore
        ("2", "the backup's rows of public.backup_probe do not load"),  # pgload's
    ],
)
def test_restore_failing_half_way_leaves_the_live_database(live, jobs, failure):
    make_users()
    with connections["default"].cursor() as cursor:
        # A classic restore failure: a CHECK constraint calls a function that finds
        # its table through search_path, which pg_restore empties. The schema is
        # created, then loading the data fails half-way.
        cursor.execute(
            "CREATE TABLE backup_probe_limits (n int);"
            "INSERT INTO backup_probe_limits VALUES (10);"
            "CREATE FUNCTION backup_probe_ok(v int) RETURNS boolean LANGUAGE sql "
            "AS 'SELECT v < (SELECT max(n) FROM backup_probe_limits)';"
            "CREATE TABLE backup_probe (v int CHECK (backup_probe_ok(v)));"
            "INSERT INTO backup_probe VALUES (1);"
        )
    name = take_backup()
    User.objects.filter(username="bob").delete()
    before = snapshot()
    with pytest.raises(
        CommandError, match=f"{re.escape(failure)}.*backup_probe_limits"
    ):
        call("restore", name, "--noinput", "--jobs", jobs)
    assert snapshot() == before
    assert other_databases(live) == []


def test_round_trip_through_s3(live, s3):
    make_users()
    before = snapshot()
    name = take_backup()
    assert bucket_keys(s3) == [f"site-a/backup/{name}", f"site-a/backup/{name}.json"]
    User.objects.all().delete()
    call("restore", "latest", "--noinput")
    assert snapshot() == before


def test_an_uncompressed_dump_is_listed_as_uncompressed(live, s3, client, alice):
    plain = take_backup("--no-compress")
    packed = take_backup()
    listed = {b["name"]: b["compressed"] for b in json.loads(call("backups", "--json"))}
    assert listed == {plain: False, packed: True}
    client.force_login(alice)
    page = client.get("/api/v1/backups/").json()["results"]
    api = {b["name"]: b["compressed"] for b in page}
    assert api == listed


def s3_object(s3, name: str) -> bytes:
    return s3.client.get_object(Bucket=s3.bucket, Key=f"site-a/backup/{name}")[
        "Body"
    ].read()


def s3_put(s3, name: str, body: bytes) -> None:
    s3.client.put_object(Bucket=s3.bucket, Key=f"site-a/backup/{name}", Body=body)


def test_retention_keeps_the_newest_complete_backup_and_counts_only_complete_ones(
    live, s3
):
    make_users()
    good_old, no_checksum, good_new, cut_1, cut_2 = (
        services.backup().name for _ in range(5)
    )
    metadata = json.loads(s3_object(s3, f"{no_checksum}.json"))
    del metadata["sha256"]
    s3_put(s3, f"{no_checksum}.json", json.dumps(metadata).encode())
    for name in (cut_1, cut_2):  # the two newest are truncated: three are damaged
        s3_put(s3, name, s3_object(s3, name)[:-100])

    # The case: --keep 2 used to delete the two good older backups.
    output = call("prune_backups", "--keep", "2", "--dry-run")
    rows = {line.split()[0]: line for line in output.splitlines()[1:-1]}
    assert "keep" in rows[cut_2] and "damaged, newer than the newest 2" in rows[cut_2]
    assert "truncated or damaged" in rows[cut_1]
    assert "keep" in rows[good_new] and "the newest complete backup" in rows[good_new]
    assert "keep" in rows[no_checksum] and "no SHA-256 checksum" in rows[no_checksum]
    assert (
        "keep" in rows[good_old] and "complete, one of the newest 2" in rows[good_old]
    )
    assert output.splitlines()[-1].startswith("Would delete 0 backups")
    assert (
        call("prune_backups", "--keep", "2")
        .splitlines()[-1]
        .startswith("Deleted 0 backups")
    )

    output = call("prune_backups", "--keep", "1")
    rows = {line.split()[0]: line for line in output.splitlines()[1:-1]}
    assert (
        "deleted" in rows[no_checksum]
        and "older than the newest 1" in rows[no_checksum]
    )
    assert "deleted" in rows[good_old]
    assert output.splitlines()[-1].startswith("Deleted 2 backups")
    remaining = [(b.name, b.state) for b in services.list_backups()]
    assert remaining == [
        (cut_2, "damaged"),
        (cut_1, "damaged"),
        (good_new, "complete"),
    ]
    User.objects.all().delete()
    call("restore", "latest", "--noinput")  # the newest complete one is still there
    assert [u[1] for u in snapshot()] == ["alice", "bob", "carol"]
