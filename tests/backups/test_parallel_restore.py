"""pg_restore --jobs: from the local backup file in place, or from a spooled copy of
an S3 backup; the checksum is verified before anything is swapped in."""

from __future__ import annotations

import threading

import pytest
from django.core.management import CommandError

from apps.accounts.models import User
from apps.backups import services
from apps.backups.engines import postgresql
from tests.helpers import call

from .conftest import other_databases, take_backup

pytestmark = pytest.mark.postgres


def usernames() -> list[str]:
    return sorted(User.objects.values_list("username", flat=True))


@pytest.mark.parametrize("jobs", ["1", "2", "3"])
def test_restore_with_each_number_of_jobs(live, backup_root, jobs):
    User.objects.create_user("alice", "alice@example.org", "pw")
    name = take_backup()
    User.objects.create_user("bob", "bob@example.org", "pw")
    output = call("restore", name, "--noinput", "--jobs", jobs)
    assert f"Restored default from {name}." in output
    assert usernames() == ["alice"]


def test_a_damaged_file_is_refused_while_pg_restore_reads_it(live, backup_root):
    User.objects.create_user("alice", "alice@example.org", "pw")
    name = take_backup()
    dump = backup_root / "backup" / name
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    User.objects.create_user("bob", "bob@example.org", "pw")
    with pytest.raises(CommandError, match="does not match its checksum"):
        call("restore", name, "--noinput", "--jobs", "2")
    assert usernames() == ["alice", "bob"]  # the live database as it was
    assert other_databases(live) == []


def test_an_s3_backup_is_spooled_then_restored_in_parallel(
    live, s3, settings, tmp_path
):
    spool = tmp_path / "spool"
    spool.mkdir()
    settings.BACKUP_SPOOL_DIR = str(spool)
    User.objects.create_user("alice", "alice@example.org", "pw")
    name = take_backup()
    User.objects.create_user("bob", "bob@example.org", "pw")
    call("restore", name, "--noinput", "--jobs", "2")
    assert usernames() == ["alice"]
    assert list(spool.iterdir()) == []  # the spooled copy is gone


def test_too_little_room_to_spool_says_how_much_is_needed(
    live, s3, settings, tmp_path, monkeypatch
):
    settings.BACKUP_SPOOL_DIR = str(tmp_path)
    name = take_backup()
    monkeypatch.setattr(postgresql, "SPOOL_MARGIN", 2**62)  # more than any disk
    with pytest.raises(
        CommandError, match=r"needs [0-9,]+ MiB free in .* or restore with --jobs 1"
    ):
        call("restore", name, "--noinput", "--jobs", "2")
    assert other_databases(live) == []
    call("restore", name, "--noinput", "--jobs", "1")  # streamed: no room needed


def test_jobs_must_be_positive(live):
    with pytest.raises(CommandError, match="--jobs must be at least 1"):
        call("restore", "latest", "--noinput", "--jobs", "0")


class Followed:
    """A restore's progress callback: each running total, and the thread it came
    from."""

    def __init__(self):
        self.calls: list[tuple[int, str]] = []

    def __call__(self, done: int) -> None:
        self.calls.append((done, threading.current_thread().name))

    @property
    def totals(self) -> list[int]:
        return [done for done, _ in self.calls]


def test_the_progress_of_a_parallel_restore_follows_the_load(live, backup_root):
    for n in range(200):
        User.objects.create_user(f"user{n}", f"user{n}@example.org", "pw")
    name = take_backup()
    size = services.resolve(name).size
    followed = Followed()
    services.restore(name, pg_jobs=2, progress=followed)
    *loading, (last, _) = followed.calls
    # The rows' bytes as the loads read them (the checksum's read, beside, is not
    # followed: it ends within a second), then the rest once the indexes are built.
    assert loading and all(thread.startswith("restore-load-") for _, thread in loading)
    totals = followed.totals
    assert totals == sorted(set(totals)) and totals[-2] < last == size


def test_the_progress_of_an_s3_restore_follows_the_download_then_the_load(
    live, s3, settings, tmp_path
):
    settings.BACKUP_SPOOL_DIR = str(tmp_path)
    name = take_backup()
    size = services.resolve(name).size
    followed = Followed()
    services.restore(name, pg_jobs=2, progress=followed)
    totals = followed.totals
    # Two passes over the same total: a smaller figure begins the second
    # (apps.core.output.Progress.reach starts the bar again).
    turns = [i for i in range(1, len(totals)) if totals[i] < totals[i - 1]]
    assert len(turns) == 1 and totals[turns[0] - 1] == size == totals[-1]
    assert all(t.startswith("restore-load-") for _, t in followed.calls[turns[0] : -1])
