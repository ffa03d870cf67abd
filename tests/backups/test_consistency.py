"""A backup taken while another process keeps committing rows restores a prefix of
them: whole transactions only, and exactly the row counts its metadata recorded."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from django.db import connections

from tests.conftest import database_url
from tests.helpers import call

from .conftest import take_backup

pytestmark = pytest.mark.postgres

WRITER = """
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    group = 0
    while group < 1_000_000:
        group += 1
        with conn.transaction():  # both rows of a group, or neither
            conn.execute("INSERT INTO backup_pair (grp) VALUES (%s)", [group])
            conn.execute("INSERT INTO backup_pair (grp) VALUES (%s)", [group])
        if group % 20 == 0:
            print(group, flush=True)
"""


def written() -> int:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT count(DISTINCT grp) FROM backup_pair")
        return cursor.fetchone()[0]


def test_a_backup_under_writes_from_another_process_restores_a_prefix(
    live, backup_root
):
    with connections["default"].cursor() as cursor:
        cursor.execute("CREATE TABLE backup_pair (id serial PRIMARY KEY, grp int)")
    url = database_url(live)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, url], stdout=subprocess.PIPE, text=True
    )
    try:
        writer.stdout.readline()  # it is writing
        name = take_backup()
        during = written()
        deadline = time.monotonic() + 30
        while written() < during + 40 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        writer.terminate()
        writer.wait(timeout=30)
        writer.stdout.close()
    after = written()

    metadata = json.loads((backup_root / "backup" / f"{name}.json").read_text())
    call("restore", name, "--noinput")
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT grp, count(*) FROM backup_pair GROUP BY grp")
        counts = dict(cursor.fetchall())
    assert counts, "the backup caught none of the writes"
    assert set(counts.values()) == {2}  # no half transaction
    assert sorted(counts) == list(range(1, len(counts) + 1))  # a prefix
    assert len(counts) < after  # the writer went on after the snapshot
    # The counts recorded at dump time are those of the dump's own snapshot.
    assert metadata["rows"]["backup_pair"] == 2 * len(counts)
