"""The periodic-task admin: "Run selected tasks" is recorded as trigger admin."""

import pytest
from django_celery_beat.models import PeriodicTask

from apps.jobs import services
from apps.jobs.models import JobRun

pytestmark = pytest.mark.django_db


def messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def run_selected(client, *tasks: PeriodicTask):
    return client.post(
        "/admin/django_celery_beat/periodictask/",
        {"action": "run_tasks", "_selected_action": [t.pk for t in tasks]},
        follow=True,
    )


def test_run_selected_tasks_runs_the_job_as_admin(admin_client):
    services.schedule("0 4 * * *", "log-test", [], {"message": "from the admin"})
    task = PeriodicTask.objects.get(task="stagehand.log-test")
    response = run_selected(admin_client, task)
    run = JobRun.objects.get()
    assert (run.job, run.trigger, run.outcome) == ("log-test", "admin", "success")
    assert run.kwargs == {"message": "from the admin"}
    assert messages(response) == [
        f'Ran Job log-test(message="from the admin") (run #{run.pk}).'
    ]


def test_run_selected_tasks_with_a_broker_queues_the_run_as_admin(
    admin_client, settings, django_capture_on_commit_callbacks
):
    settings.STAGEHAND_HAS_BROKER = True
    services.schedule("0 4 * * *", "log-test")
    task = PeriodicTask.objects.get(task="stagehand.log-test")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = run_selected(admin_client, task)
    run = JobRun.objects.get()
    assert (run.trigger, run.outcome) == ("admin", "queued")
    assert len(callbacks) == 1  # the message leaves on commit
    assert messages(response) == [f"Sent Job log-test() (run #{run.pk})."]
