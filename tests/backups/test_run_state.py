"""Run history across a restore: runs left running in the backup are marked as
interrupted, and the restore's own run is in the database that is live afterwards."""

from __future__ import annotations

import pytest
from django.utils import timezone

from apps.backups import services
from apps.jobs import services as jobs
from apps.jobs.models import JobRun
from apps.jobs.registry import REGISTRY, job
from tests.helpers import call

from .conftest import take_backup

pytestmark = pytest.mark.postgres


def test_runs_left_running_are_interrupted_and_the_restore_is_recorded(live):
    JobRun.objects.create(
        job="backup", trigger="beat", outcome="running", started_at=timezone.now()
    )
    name = take_backup()
    JobRun.objects.all().delete()

    output = call("restore", name, "--noinput")
    assert "Marked 1 run left running in the backup as interrupted" in output
    backup_run = JobRun.objects.get(job="backup")
    assert backup_run.outcome == JobRun.Outcome.FAILURE
    assert f"Interrupted by the restore of {name}" in backup_run.error
    restore_run = JobRun.objects.get(job="restore")
    assert restore_run.outcome == JobRun.Outcome.SUCCESS
    assert restore_run.args == [name] and restore_run.trigger == "shell"
    assert "the previous database is kept as" in restore_run.result
    assert not JobRun.objects.filter(outcome="running").exists()


@pytest.fixture
def restore_job():
    @job("test-restore", "A restore run as a job, for this test.")
    def restore_as_job(name: str) -> str:
        return services.restore(name).backup.name

    yield
    del REGISTRY["test-restore"]


def test_a_restore_run_as_a_job_finishes_its_run_in_the_restored_database(
    live, restore_job
):
    name = take_backup()
    for _ in range(3):  # runs after the backup: their ids are not in it
        JobRun.objects.create(job="log-test", trigger="shell", outcome="success")
    outcome = jobs.run("test-restore", kwargs={"name": name})
    assert outcome.error is None, outcome.error
    # The live database is now the restored one: the three runs are gone, and the
    # restore's run is there, finished, under the id it had.
    assert not JobRun.objects.filter(job="log-test").exists()
    restored = JobRun.objects.get(job="test-restore")
    assert restored.pk == outcome.run.pk
    assert restored.outcome == JobRun.Outcome.SUCCESS and restored.result == name
    # New runs get new ids (the sequence moved past the carried one).
    assert JobRun.objects.create(job="log-test", trigger="shell").pk > restored.pk
