"""/api/v1/jobs/: the jobs command's services over REST, staff only."""

import pytest
from django_celery_beat.models import PeriodicTask
from rest_framework.test import APIClient

from apps.jobs.models import JobRun
from tests.helpers import api_client

URL = "/api/v1/jobs/"

# POST run/ is not wrapped in the request's transaction (a job commits as it goes);
# DRF marks the surrounding transaction for rollback on an error response, which
# would be the test's own transaction here: these tests run outside one.
RUN_TESTS = pytest.mark.django_db(transaction=True)


@RUN_TESTS
def test_only_staff_may_use_the_jobs_api(bob):
    bob = api_client(bob)
    assert bob.get(URL).status_code == 403
    assert APIClient().get(URL).status_code in (401, 403)
    response = bob.post(URL + "run/", {"name": "log-test"}, format="json")
    assert response.status_code == 403
    assert not JobRun.objects.exists()


@RUN_TESTS
def test_list_and_run(api):
    names = [j["name"] for j in api.get(URL, {"limit": 1000}).json()["results"]]
    assert names == sorted(names) and "log-test" in names

    response = api.post(
        URL + "run/", {"name": "log-test", "kwargs": {"message": "api"}}, format="json"
    )
    assert response.status_code == 200
    run = response.json()
    assert (run["job"], run["trigger"], run["outcome"]) == (
        "log-test",
        "api",
        "success",
    )
    assert run["label"] == 'log-test(message="api")'
    assert JobRun.objects.get().trigger == "api"

    failed = api.post(URL + "run/", {"name": "error-test"}, format="json").json()
    assert failed["outcome"] == "failure" and "DeliberateError" in failed["error"]


@RUN_TESTS
def test_run_errors_have_the_error_shape(api, settings):
    response = api.post(URL + "run/", {"name": "log-tst"}, format="json")
    assert response.status_code == 404
    assert response.json()["error"] == "jobs.unknown_job"
    assert "did you mean log-test" in response.json()["detail"]

    settings.STAGEHAND_HAS_BROKER = False
    response = api.post(
        URL + "run/", {"name": "log-test", "delay": True}, format="json"
    )
    assert response.status_code == 503
    assert response.json()["error"] == "jobs.no_broker"
    assert "CELERY_BROKER_URL" in response.json()["detail"]


@pytest.mark.django_db
def test_schedule_scheduled_unschedule(api, params_job):
    PeriodicTask.objects.all().delete()
    body = {"cron": "@hourly", "name": "params-test", "args": ["a"], "kwargs": {"n": 3}}
    response = api.post(URL + "schedule/", body, format="json")
    assert response.status_code == 201
    assert response.json() == {"label": 'params-test("a", n=3)', "cron": "0 * * * *"}
    again = api.post(URL + "schedule/", {**body, "cron": "5 4 * * *"}, format="json")
    assert again.status_code == 200 and PeriodicTask.objects.count() == 1

    bad = api.post(URL + "schedule/", {**body, "cron": "61 * * * *"}, format="json")
    assert bad.status_code == 400 and bad.json()["error"] == "jobs.invalid_cron"

    scheduled = api.get(URL + "scheduled/").json()["results"]
    assert [(s["label"], s["cron"]) for s in scheduled] == [
        ('params-test("a", n=3)', "5 4 * * *")
    ]

    missing = api.post(
        URL + "unschedule/", {"name": "params-test", "args": ["a"]}, format="json"
    )
    assert (
        missing.status_code == 404 and missing.json()["error"] == "jobs.not_scheduled"
    )
    done = api.post(
        URL + "unschedule/",
        {"name": "params-test", "args": ["a"], "kwargs": {"n": 3}},
        format="json",
    )
    assert done.status_code == 200 and done.json()["cron"] == "5 4 * * *"
    assert not PeriodicTask.objects.exists()


@RUN_TESTS
def test_history(api):
    api.post(URL + "run/", {"name": "log-test"}, format="json")
    api.post(URL + "run/", {"name": "error-test"}, format="json")
    runs = api.get(URL + "history/").json()["results"]
    assert [r["job"] for r in runs] == ["error-test", "log-test"]
    only = api.get(URL + "history/", {"job": "log-test", "limit": 1}).json()["results"]
    assert [r["job"] for r in only] == ["log-test"]
    bad = api.get(URL + "history/", {"limit": "zero"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_limit"
    unknown = api.get(URL + "history/", {"job": "nope"})
    assert unknown.status_code == 404
    nul = api.get(URL + "history/", {"job": "log\x00test"})
    assert nul.status_code == 400 and nul.json()["error"] == "jobs.invalid_job"
