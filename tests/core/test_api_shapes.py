"""One shape per resource: a command's ``--json`` prints what the API answers, because
both go through the same serializer (and the schema is built from it too)."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from apps.backups import services as backups
from apps.jobs import services as jobs
from apps.worlds import services as worlds

from ..backups.conftest import SQLITE_ALIAS, sqlite_db  # noqa: F401 - a fixture


def command_json(*args: str):
    out = StringIO()
    call_command(*args, "--json", stdout=out)
    return json.loads(out.getvalue())


@pytest.fixture
def staff(alice):
    client = APIClient()
    client.force_authenticate(alice)
    return client


def results(client, url: str) -> list:
    response = client.get(url, {"limit": 1000})
    assert response.status_code == 200, response.content
    return response.json()["results"]


def test_worlds(staff):
    worlds.create_world("sample", "Sample World", "sample.example.org")
    deleted = worlds.create_world("gone", "Gone", "gone.example.org")
    worlds.delete_world(deleted)
    assert command_json("list_worlds") == results(staff, "/api/v1/worlds/")
    assert (
        command_json("list_worlds", "--all")
        == staff.get("/api/v1/worlds/", {"all": 1}).json()["results"]
    )


@pytest.mark.django_db(transaction=True)
def test_jobs_runs_and_schedules(staff):
    jobs.run("log-test", [], {}, trigger="cli")
    jobs.schedule("@hourly", "log-test", [], {})
    assert command_json("jobs", "list") == results(staff, "/api/v1/jobs/")
    assert command_json("jobs", "history") == results(staff, "/api/v1/jobs/history/")
    scheduled = results(staff, "/api/v1/jobs/scheduled/")
    assert command_json("jobs", "scheduled") == scheduled
    assert any(s["job"] == "log-test" for s in scheduled)


@pytest.mark.django_db(transaction=True)
def test_backups(staff, sqlite_db):  # noqa: F811 - the fixture
    backups.backup(SQLITE_ALIAS)
    listed = command_json("backups")
    assert len(listed) == 1 and listed == results(staff, "/api/v1/backups/")


def test_stats_components(staff):
    from_command = command_json("stats")
    from_api = staff.get("/api/v1/stats/").json()["components"]
    # The figures are measured anew each time; the shape and statuses are the same.
    assert [set(c) for c in from_command] == [set(c) for c in from_api]
    assert [(c["name"], c["status"]) for c in from_command] == [
        (c["name"], c["status"]) for c in from_api
    ]
