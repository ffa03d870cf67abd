"""connections-drop and connections-reload: the commands' sends as jobs, for workers.

On a real worker, from the REST API's ``delay``: tests/jobs/test_jobs_run_on_worker.py.
"""

from __future__ import annotations

import pytest

from apps.jobs import services as jobs

from .helpers import inbox, open_channels


@pytest.mark.redis
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("job", "verb", "message"),
    [
        ("connections-drop", "Dropped", "connections.drop"),
        ("connections-reload", "Reloaded", "connections.reload"),
    ],
)
def test_the_jobs_send_as_the_commands_do(registry, job, verb, message):
    opened = open_channels(registry, {"abc123.production": 2, "def456.production": 1})

    outcome = jobs.run(job, ["abc*"], {"interval_ms": 5})

    assert outcome.run.outcome == "success", outcome.run.error
    assert outcome.run.result == f"{verb} 2 connections (labels: abc123.production)"
    got = inbox([c for channels in opened.values() for c in channels])
    for channel in opened["abc123.production"]:
        assert got[channel] == [{"type": message}]
    assert got[opened["def456.production"][0]] == []


@pytest.mark.redis
@pytest.mark.django_db
def test_nothing_matching_is_a_success_that_says_so(registry):
    # interval_ms as text, as a schedule's kwargs arrive
    outcome = jobs.run("connections-drop", ["nosuchbuild.*"], {"interval_ms": "10"})
    assert outcome.run.outcome == "success"
    assert outcome.run.result == "Dropped 0 connections (labels: none)"


@pytest.mark.redis
@pytest.mark.django_db
@pytest.mark.parametrize("interval", ["soon", -5, 1.5, True])
def test_a_bad_interval_fails_the_run_and_sends_nothing(registry, interval):
    opened = open_channels(registry, {"abc123.production": 1})
    outcome = jobs.run("connections-reload", [], {"interval_ms": interval})
    assert outcome.run.outcome == "failure"
    assert "interval_ms must be a whole number of milliseconds" in outcome.run.error
    assert inbox(opened["abc123.production"]) == {opened["abc123.production"][0]: []}


@pytest.mark.django_db
def test_without_redis_the_run_fails_saying_so(in_memory_layer):
    outcome = jobs.run("connections-drop")
    assert outcome.run.outcome == "failure"
    assert "set REDIS_URL" in outcome.run.error
