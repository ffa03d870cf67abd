import pytest
from celery.app.task import Context

from apps.jobs import registry, services
from apps.jobs.models import JobRun
from config.celery_app import app


def test_project_jobs_are_registered_as_celery_tasks():
    names = [j.name for j in registry.all_jobs()]
    assert names == sorted(names)
    for name in ("log-test", "error-test"):
        job = registry.get_job(name)
        assert job.task_name == f"stagehand.{name}"
        assert app.tasks[job.task_name].name == job.task.name == job.task_name


def test_registering_a_name_twice_is_refused(temp_job):
    temp_job("twice")
    with pytest.raises(ValueError, match="registered twice"):
        registry.job("twice", "again")(lambda: None)


@pytest.mark.parametrize(
    ("words", "args", "kwargs"),
    [
        ([], [], {}),
        (["a", "b"], ["a", "b"], {}),
        (["k=v"], [], {"k": "v"}),
        (["k=v=w"], [], {"k": "v=w"}),
        (["url=http://x/?a=b&c=d"], [], {"url": "http://x/?a=b&c=d"}),
        (
            ["n=3", "f=1.5", "t=true", "z=null"],
            [],
            {"n": 3, "f": 1.5, "t": True, "z": None},
        ),
        (['s="x"', "s2=x", 'l=[1, "a"]'], [], {"s": "x", "s2": "x", "l": [1, "a"]}),
        (["3", "true", "word", "NaN"], [3, True, "word", "NaN"], {}),
        (["=x", "a b=c", "1x=2"], ["=x", "a b=c", "1x=2"], {}),
        (["k="], [], {"k": ""}),
    ],
)
def test_parse_params(words, args, kwargs):
    assert services.parse_params(words) == (args, kwargs)


def test_call_label_is_normalized():
    assert services.call_label("purge", [], {}) == "purge()"
    assert (
        services.call_label("x", ["a", 3], {"z": True, "b": "v=w"})
        == 'x("a", 3, b="v=w", z=true)'
    )


@pytest.mark.parametrize(
    ("request_fields", "trigger"),
    [
        ({}, JobRun.Trigger.WORKER),
        ({"stagehand_trigger": "api"}, JobRun.Trigger.API),
        ({"headers": {"stagehand_trigger": "api"}}, JobRun.Trigger.API),
        ({"periodic_task_name": "Job purge()"}, JobRun.Trigger.BEAT),
        ({"stagehand_trigger": "nonsense"}, JobRun.Trigger.WORKER),
    ],
)
def test_trigger_of_a_celery_request(request_fields, trigger):
    assert services.trigger_of(Context(**request_fields)) == trigger


@pytest.mark.django_db
def test_a_job_called_as_a_celery_task_is_recorded():
    # Without a broker Celery runs tasks eagerly: the task body still records the run.
    result = registry.get_job("log-test").task.delay()
    assert "logged" in result.get()
    run = JobRun.objects.get()
    assert (run.job, run.trigger, run.outcome) == ("log-test", "worker", "success")
    assert run.task_id == result.id
