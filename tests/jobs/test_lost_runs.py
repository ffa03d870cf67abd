"""Runs whose process died are marked lost: a heartbeat while a job runs, and a
sweep wherever runs are read (docs/jobs.md, "Lost runs")."""

import os
import signal
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.jobs import services
from apps.jobs.models import JobRun
from tests.helpers import manage, wait_for


def running(started_ago: float, heartbeat_ago: float | None) -> JobRun:
    now = timezone.now()
    return JobRun.objects.create(
        job="log-test",
        trigger=JobRun.Trigger.WORKER,
        outcome=JobRun.Outcome.RUNNING,
        started_at=now - timedelta(seconds=started_ago),
        heartbeat_at=None
        if heartbeat_ago is None
        else now - timedelta(seconds=heartbeat_ago),
    )


@pytest.mark.django_db
def test_a_run_without_a_recent_heartbeat_is_marked_lost_when_runs_are_read(settings):
    settings.JOB_HEARTBEAT = 10
    assert services.lost_after() == 30
    alive = running(started_ago=3600, heartbeat_ago=5)
    silent = running(started_ago=3600, heartbeat_ago=31)
    old = running(started_ago=31, heartbeat_ago=None)  # from before heartbeats
    young = running(started_ago=5, heartbeat_ago=None)
    out = StringIO()
    call_command("jobs", "history", stdout=out)
    outcomes = dict(JobRun.objects.values_list("pk", "outcome"))
    assert outcomes == {
        alive.pk: "running",
        silent.pk: "lost",
        old.pk: "lost",
        young.pk: "running",
    }
    assert (
        "No heartbeat for more than 30 seconds"
        in JobRun.objects.get(pk=silent.pk).error
    )
    assert "lost" in out.getvalue().split()
    assert services.mark_lost_runs() == 0  # done once


@pytest.mark.django_db(transaction=True)
def test_a_running_job_beats_and_a_lost_run_that_finishes_records_its_outcome(
    settings,
):
    settings.JOB_HEARTBEAT = 0.1
    with services.recorded("log-test", [], {}, trigger="shell") as recording:
        started = JobRun.objects.get(pk=recording.run.pk).heartbeat_at
        wait_for(
            lambda: JobRun.objects.get(pk=recording.run.pk).heartbeat_at > started,
            "a heartbeat",
            timeout=10,
        )
        # Cut off as far as the sweep can tell, but the work goes on and finishes.
        JobRun.objects.filter(pk=recording.run.pk).update(outcome="lost")
        recording.result = "done"
    run = JobRun.objects.get(pk=recording.run.pk)
    assert (run.outcome, run.result) == ("success", "done")
    beat = run.heartbeat_at
    time.sleep(0.5)  # the heartbeat stopped with the run
    assert JobRun.objects.get(pk=run.pk).heartbeat_at == beat


@pytest.fixture
def broker_env(broker_env: dict) -> dict:
    return {**broker_env, "JOB_HEARTBEAT": "0.5"}


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_run_whose_worker_is_killed_is_marked_lost(
    broker_env, celery_worker, settings
):
    settings.JOB_HEARTBEAT = 0.5  # lost after 1.5 s without a heartbeat
    sent = manage(broker_env, "jobs", "run", "-d", "sleep-test", "seconds=300")
    assert sent.returncode == 0, sent.stderr
    task_id = sent.stdout.splitlines()[0].strip()

    def beating() -> JobRun | None:
        run = JobRun.objects.filter(task_id=task_id, outcome="running").first()
        return run if run and run.heartbeat_at > run.started_at else None

    run = wait_for(beating, "the worker to run sleep-test and beat")
    # Alive for longer than the bound: the sweep leaves it alone.
    time.sleep(2 * services.lost_after())
    services.history()
    assert JobRun.objects.get(pk=run.pk).outcome == "running"

    os.kill(celery_worker.pid, signal.SIGKILL)
    celery_worker.wait(timeout=30)
    killed_at = time.monotonic()

    def lost() -> bool:
        services.history()
        return JobRun.objects.get(pk=run.pk).outcome == "lost"

    wait_for(lost, "the killed worker's run to be marked lost", timeout=30)
    # Within the documented bound: three missed heartbeats (plus the last interval).
    assert time.monotonic() - killed_at <= services.lost_after() + 2
    out = StringIO()
    call_command("jobs", "history", "sleep-test", stdout=out)
    line = next(line for line in out.getvalue().splitlines() if task_id in line)
    assert "lost" in line.split() and "No heartbeat" in line
