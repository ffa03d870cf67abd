"""restore --dry-run / --verify and the verify-backup job: a real rehearsal.

The backup is restored into a scratch database beside the live one (real pg_restore),
its migrations, integrity and row counts are checked, the scratch database is
dropped, and the outcome is recorded beside the backup for `backups` and `stats`.
"""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError
from django.db import connections
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from apps.accounts.models import User
from apps.backups import services
from apps.jobs import services as jobs
from apps.jobs.models import JobRun
from tests.helpers import call

from .conftest import files_under, other_databases, take_backup

pytestmark = pytest.mark.postgres


def make_users() -> None:
    for name in ("alice", "bob", "carol"):
        User.objects.create_user(name, f"{name}@example.org", "pw")


def listed(name: str) -> dict:
    return {b["name"]: b for b in json.loads(call("backups", "--json"))}[name]


def rewrite_metadata(backup_root, name: str, **changes) -> None:
    path = backup_root / "backup" / f"{name}.json"
    metadata = json.loads(path.read_text())
    metadata.update(changes)
    path.write_text(json.dumps(metadata))


def test_verify_restores_into_a_scratch_database_and_records_ok(live, backup_root):
    make_users()
    name = take_backup()
    metadata = json.loads((backup_root / "backup" / f"{name}.json").read_text())
    assert metadata["rows"]["accounts_user"] == 3
    assert listed(name)["verified"] == "not yet"

    output = call("restore", "--verify", name)
    assert "Migrations:" in output and "recorded; the code's." in output
    assert "Integrity checks: no problems." in output
    assert "all as counted at dump time" in output
    assert f"{name} restores (rehearsed in a scratch database" in output
    assert other_databases(live) == []  # the scratch database is gone
    entry = listed(name)
    assert entry["verified"] == "ok" and entry["verified_at"]
    assert f"backup/{name}.verified.json" in files_under(backup_root)
    table = call("backups")
    assert table.splitlines()[1].split()[-2:] == ["ok", "ok"]
    assert services.newest_verified().name == name


def test_dry_run_is_the_same_rehearsal_with_the_table_of_counts(live, backup_root):
    make_users()
    name = take_backup()
    output = call("restore", name, "--dry-run", "-v", "2")
    assert "would be kept" in output
    line = next(li for li in output.splitlines() if li.startswith("accounts_user "))
    assert line.split() == ["accounts_user", "3", "3"]
    assert "Dry run: " in output and "nothing was changed" in output
    assert User.objects.count() == 3
    assert other_databases(live) == []


def test_a_dump_pg_restore_cannot_read_fails_and_is_recorded(live, backup_root):
    name = take_backup()
    dump = backup_root / "backup" / name
    garbage = b"PGDMP" + b"\x00" * 200  # a header, then nothing pg_restore can read
    dump.write_bytes(garbage)

    rewrite_metadata(
        backup_root,
        name,
        size=len(garbage),
        sha256=hashlib.sha256(garbage).hexdigest(),
    )
    with pytest.raises(CommandError, match="rehearsal of .* failed: pg_restore"):
        call("restore", name, "--dry-run")
    entry = listed(name)
    assert entry["verified"] == "failed" and "pg_restore" in entry["verify_problem"]
    assert f"{name} failed its verification" in call("backups")
    assert other_databases(live) == []
    assert services.newest_verified() is None


def test_row_counts_that_differ_from_the_dump_fail(live, backup_root):
    make_users()
    name = take_backup()
    metadata = json.loads((backup_root / "backup" / f"{name}.json").read_text())
    rewrite_metadata(backup_root, name, rows={**metadata["rows"], "accounts_user": 4})
    with pytest.raises(
        CommandError, match=r"row counts differ .*accounts_user 3 \(dumped 4\)"
    ):
        call("restore", "--verify", name)
    assert listed(name)["verified"] == "failed"


def test_migrations_of_a_newer_stagehand_fail(live, backup_root):
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "INSERT INTO django_migrations (app, name, applied) "
            "VALUES ('accounts', '9999_from_the_future', now())"
        )
    try:
        name = take_backup()
    finally:  # the flush between tests leaves django_migrations alone
        with connections["default"].cursor() as cursor:
            cursor.execute(
                "DELETE FROM django_migrations WHERE name = '9999_from_the_future'"
            )
    with pytest.raises(CommandError, match="accounts.9999_from_the_future.*newer"):
        call("restore", "--verify", name)


def test_integrity_problems_in_the_copy_fail(live, backup_root):
    every_minute = IntervalSchedule.objects.create(
        every=1, period=IntervalSchedule.MINUTES
    )
    PeriodicTask.objects.create(
        name="left over", task="stagehand.no-such-job", interval=every_minute
    )
    name = take_backup()
    PeriodicTask.objects.filter(name="left over").delete()  # fixed live, not in it
    with pytest.raises(CommandError, match="integrity: unknown_periodic_tasks: 1"):
        call("restore", "--verify", name)
    assert other_databases(live) == []


def test_the_backup_job_verifies_the_new_backup(live, backup_root, settings):
    settings.BACKUP_VERIFY = True
    make_users()
    outcome = jobs.run("backup")
    assert outcome.error is None, outcome.error
    name = outcome.result.split(" ", 1)[0]
    assert "verification (run" in outcome.result and outcome.result.endswith(" ok")
    verify_run = JobRun.objects.get(job="verify-backup")
    assert verify_run.outcome == JobRun.Outcome.SUCCESS
    assert verify_run.kwargs == {"database": "default", "name": name}
    assert listed(name)["verified"] == "ok"


def test_the_backup_job_without_verification(live, backup_root, settings):
    settings.BACKUP_VERIFY = False
    outcome = jobs.run("backup")
    assert outcome.result.endswith("not verified (BACKUP_VERIFY is off)")
    assert not JobRun.objects.filter(job="verify-backup").exists()


def test_stats_show_the_age_of_the_newest_verified_backup(live, backup_root):
    out = call("stats", "--json")
    storage = {c["name"]: c for c in json.loads(out)}["storage"]
    assert "no verified backup yet" in storage["detail"]
    assert storage["figures"]["newest_verified_backup"] is None
    name = take_backup()
    call("restore", "--verify", name)
    newer = take_backup()  # not verified: the verified one is still the newest such
    out = call("stats", "--json")
    storage = {c["name"]: c for c in json.loads(out)}["storage"]
    assert storage["figures"]["newest_verified_backup"] == name != newer
    assert storage["figures"]["newest_verified_age_s"] >= 0
    assert re.search(
        rf"newest verified backup [0-9.]+ m?s old \({re.escape(name)}\)",
        storage["detail"],
    )


def test_files_uploaded_after_the_backup_do_not_fail_it(live, backup_root):
    name = take_backup()
    stored = default_storage.save("uploaded-later.txt", ContentFile(b"new"))
    try:
        output = call("restore", "--verify", name)
    finally:
        default_storage.delete(stored)
    assert "Integrity checks: no problems." in output
