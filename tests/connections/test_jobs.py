"""connections-drop and connections-reload: the commands' sends as jobs, for workers.

On a real worker, from the REST API's ``delay``: tests/jobs/test_jobs_run_on_worker.py.
"""

from __future__ import annotations

import json
import re

import pytest
from django.core.management.base import CommandError
from hypothesis import given
from hypothesis import strategies as st

from apps.connections.services import MAX_SPREAD_MS
from apps.connections.tasks import interval_param, spread_param
from apps.jobs import services as jobs
from apps.jobs.services import parse_value
from tests.fuzzing import any_text, fuzz, json_values
from tests.helpers import call

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


@pytest.mark.redis
@pytest.mark.django_db
@pytest.mark.parametrize("spread_ms", [30_000, "30000"])  # a schedule's text too
def test_a_paced_job_with_a_spread_gives_each_client_its_hint(registry, spread_ms):
    opened = open_channels(registry, {"abc123.production": 20})["abc123.production"]

    outcome = jobs.run(
        "connections-drop", [], {"interval_ms": 1, "spread_ms": spread_ms}
    )

    assert outcome.run.outcome == "success", outcome.run.error
    hints = [m[0]["reconnect_after_ms"] for m in inbox(opened).values()]
    assert len(hints) == 20
    assert all(0 <= hint <= 30_000 for hint in hints)
    assert len(set(hints)) > 1  # jittered, not one moment for all


@pytest.mark.redis
@pytest.mark.django_db
# None (`spread_ms=null`): the default, sized from the count (3: none).
@pytest.mark.parametrize(
    ("spread_ms", "sent"),
    [(45_000, 45_000), ("45000", 45_000), (0, None), (None, None)],
)
def test_an_unpaced_job_hands_its_spread_to_every_process(
    registry, processes, spread_ms, sent
):
    open_channels(registry, {"abc123.production": 3})
    process = processes.join("abc123.production")

    outcome = jobs.run("connections-reload", ["abc*"], {"spread_ms": spread_ms})

    assert outcome.run.outcome == "success", outcome.run.error
    message = {"type": "connections.reload", "label": "abc123.production"}
    if sent:
        message["spread_ms"] = sent
    assert inbox([process])[process] == [message]


@pytest.mark.redis
@pytest.mark.django_db
def test_the_shell_takes_spread_ms_as_a_job_parameter(registry):
    opened = open_channels(registry, {"abc123.production": 3})["abc123.production"]

    out = call(
        "jobs", "run", "connections-drop", "abc*", "interval_ms=1", "spread_ms=5000"
    )

    assert "Dropped 3 connections (labels: abc123.production)" in out
    hints = [m[0]["reconnect_after_ms"] for m in inbox(opened).values()]
    assert all(0 <= hint <= 5000 for hint in hints)


@pytest.mark.redis
@pytest.mark.django_db
@pytest.mark.parametrize(
    "spread",
    ["soon", "30s", -5, "-5", 1.5, 3_600_001, 2**63, "", " ", "²", "１２", [1], {}],
)
def test_a_bad_spread_fails_the_run_and_sends_nothing(registry, spread):
    opened = open_channels(registry, {"abc123.production": 1})
    outcome = jobs.run("connections-drop", [], {"spread_ms": spread})
    assert outcome.run.outcome == "failure"
    assert (
        "spread_ms must be a whole number of milliseconds, from 0 to 3,600,000"
        in outcome.run.error
    )
    assert "30000 is 30 s" in outcome.run.error
    assert inbox(opened["abc123.production"]) == {opened["abc123.production"][0]: []}


@pytest.mark.django_db
def test_a_schedule_refuses_a_spread_that_is_no_number(settings):
    with pytest.raises(
        CommandError,
        match=r"spread_ms=true is not int \| str \| None; connections-drop takes "
        r"\(\*labels: str, interval_ms: int \| str = 0, "
        r"spread_ms: int \| str \| None = None\)",
    ):
        call("jobs", "schedule", "@daily", "connections-drop", "spread_ms=true")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("param", "problem"),
    [
        ("spread_ms=-5", "spread_ms must be a whole number of milliseconds, from 0"),
        ("spread_ms=30s", "got '30s' (30000 is 30 s"),
        ("interval_ms=-1", "interval_ms must be a whole number of milliseconds"),
    ],
)
def test_a_schedule_refuses_values_out_of_range(param, problem):
    with pytest.raises(CommandError, match=re.escape(problem)):
        call("jobs", "schedule", "@daily", "connections-reload", param)
    scheduled = json.loads(call("jobs", "scheduled", "--json"))
    assert (
        scheduled and [s for s in scheduled if s["job"] == "connections-reload"] == []
    )


@pytest.mark.django_db
def test_without_redis_the_run_fails_saying_so(in_memory_layer):
    outcome = jobs.run("connections-drop")
    assert outcome.run.outcome == "failure"
    assert "set REDIS_URL" in outcome.run.error


# What a job parameter can be: any JSON value, or a word of the shell or a schedule.
job_values = st.one_of(
    json_values,
    st.integers(min_value=-10, max_value=MAX_SPREAD_MS + 10),
    st.integers().map(str),
    any_text.map(parse_value),
)


@fuzz
@given(job_values)
def test_fuzz_spread_param(value):
    try:
        ms = spread_param(value)
    except ValueError as exc:
        assert str(exc).startswith("spread_ms must be a whole number of milliseconds")
    else:
        assert ms is None if value is None else 0 <= ms <= MAX_SPREAD_MS


@fuzz
@given(job_values)
def test_fuzz_interval_param(value):
    try:
        ms = interval_param(value)
    except ValueError as exc:
        assert str(exc).startswith("interval_ms must be a whole number of millisec")
    else:
        assert isinstance(ms, int) and ms >= 0
