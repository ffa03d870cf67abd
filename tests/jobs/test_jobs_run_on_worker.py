"""`jobs run -d` on a real Redis broker, executed by a real `worker start` process."""

import uuid

import pytest
from celery import Celery
from django.conf import settings

from apps.jobs.models import JobRun
from tests.helpers import call, manage, wait_for

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]


def finished(task_id: str) -> JobRun | None:
    return JobRun.objects.filter(
        task_id=task_id, outcome__in=["success", "failure"]
    ).first()


def test_jobs_run_d_is_executed_by_a_worker_and_visible_in_history(
    broker_env, celery_worker
):
    sent = manage(broker_env, "jobs", "run", "-d", "log-test", "message=from the shell")
    assert sent.returncode == 0, sent.stderr
    task_id = sent.stdout.splitlines()[0].strip()
    assert (
        f'✔ Sent Job log-test(message="from the shell") to the workers (task {task_id})'
        in sent.stdout
    )

    run = wait_for(lambda: finished(task_id), f"the worker to run task {task_id}")
    assert run.outcome == "success", run.error
    assert run.trigger == "worker"
    run_id = run.pk
    assert run.kwargs == {"message": "from the shell"}
    assert run.queued_at is not None and run.started_at >= run.queued_at
    assert "from the shell" in run.result
    # One row per run: the worker claimed the row recorded as queued.
    assert JobRun.objects.filter(task_id=task_id).count() == 1

    failed = manage(broker_env, "jobs", "run", "-d", "error-test")
    assert failed.returncode == 0, failed.stderr
    failed_id = failed.stdout.splitlines()[0].strip()
    run = wait_for(lambda: finished(failed_id), "the worker to run error-test")
    assert run.outcome == "failure"
    assert "DeliberateError: error-test: this failure is deliberate" in run.error

    # What Celery Beat sends carries the periodic task's name: recorded as beat.
    beat_id = str(uuid.uuid4())
    probe = Celery("beat-probe", broker=settings.REDIS_URL, set_as_current=False)
    try:
        probe.send_task(
            "stagehand.log-test",
            task_id=beat_id,
            headers={"periodic_task_name": "Job log-test()"},
        )
    finally:
        probe.close()
    run = wait_for(lambda: finished(beat_id), "the worker to run the beat message")
    assert run.trigger == "beat" and run.outcome == "success"

    history = call("jobs", "history")
    assert task_id in history and failed_id in history and beat_id in history
    line = next(line for line in history.splitlines() if task_id in line)
    assert line.split()[0] == str(run_id)
    assert {"worker", "success"} <= set(line.split())
