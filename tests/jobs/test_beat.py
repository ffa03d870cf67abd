"""Celery Beat: the DatabaseScheduler sees new schedules, and only one beat sends."""

import json
from datetime import timedelta
from io import StringIO

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from apps.jobs import services
from apps.jobs.beat import LockedDatabaseScheduler
from apps.jobs.models import BeatLock, JobRun
from config.celery_app import app
from tests.conftest import database_url


def scheduler() -> LockedDatabaseScheduler:
    return LockedDatabaseScheduler(app=app)


@pytest.mark.django_db
def test_the_beat_lock_has_one_holder_and_expires():
    assert services.hold_beat_lock("beat-a", ttl=60)
    assert not services.hold_beat_lock("beat-b", ttl=60)
    assert services.hold_beat_lock("beat-a", ttl=60)  # renewal
    assert services.beat_lock_holder()["holder"] == "beat-a"

    # beat-a died: its lease runs out and the standby takes over.
    BeatLock.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert services.beat_lock_holder() is None
    assert services.hold_beat_lock("beat-b", ttl=60)
    assert not services.hold_beat_lock("beat-a", ttl=60)

    assert not services.release_beat_lock("beat-a")
    assert services.release_beat_lock("beat-b")
    assert services.hold_beat_lock("beat-a", ttl=60)


@pytest.mark.django_db(transaction=True)
def test_the_database_scheduler_picks_up_a_new_schedule():
    beat = scheduler()
    try:
        assert not any(e.task == "stagehand.log-test" for e in beat.schedule.values())
        call_command(
            "jobs",
            "schedule",
            "*/5 * * * *",
            "log-test",
            "message=x",
            stdout=StringIO(),
        )
        entries = [e for e in beat.schedule.values() if e.task == "stagehand.log-test"]
        assert len(entries) == 1
        assert entries[0].kwargs == {"message": "x"}
        assert entries[0].schedule.minute == set(range(0, 60, 5))

        call_command("jobs", "unschedule", "log-test", "message=x", stdout=StringIO())
        assert not any(e.task == "stagehand.log-test" for e in beat.schedule.values())
    finally:
        beat.close()


def make_due(name: str) -> None:
    crontab = CrontabSchedule.objects.create(minute="*", hour="*", timezone="UTC")
    PeriodicTask.objects.create(
        name=name,
        task="stagehand.log-test",
        kwargs=json.dumps({"message": name}),
        crontab=crontab,
        last_run_at=timezone.now() - timedelta(hours=1),
    )


@pytest.mark.django_db(transaction=True)
def test_only_the_beat_holding_the_lock_sends_due_jobs():
    PeriodicTask.objects.all().delete()
    first, second = scheduler(), scheduler()
    try:
        assert first.holds_lock()
        make_due("due-job")
        # The standby beat sees the due job but sends nothing.
        assert any(e.name == "due-job" for e in second.schedule.values())
        second.tick()
        assert not JobRun.objects.exists()
        # The lock holder sends it (no broker in tests: Celery runs it eagerly).
        first.tick()
        run = JobRun.objects.get()
        assert (run.job, run.kwargs, run.trigger) == (
            "log-test",
            {"message": "due-job"},
            "beat",
        )
        # Once the holder stops, the standby takes over.
        first.close()
        assert second.holds_lock()
    finally:
        first.close()
        second.close()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_beat_whose_session_was_terminated_keeps_its_lock():
    # What a restore does to every session (and a restart or failover too): the
    # beat must reconnect and renew, not crash and hand the lease to a newcomer.

    beat = scheduler()
    try:
        assert beat.holds_lock()
        connection.ensure_connection()
        pid = connection.connection.info.backend_pid
        with psycopg.connect(database_url(), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        # The first try finds the session gone; the next one reconnects.
        beat.holds_lock()
        assert beat.holds_lock()
        assert services.beat_lock_holder()["holder"] == beat.holder
    finally:
        beat.close()
