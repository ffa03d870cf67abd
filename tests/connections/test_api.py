"""/api/v1/connections/: staff only; the same services as the command."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apps.jobs.models import JobRun

from .helpers import inbox, open_channels


def test_needs_staff(db):
    assert APIClient().get("/api/v1/connections/").status_code == 401


@pytest.mark.redis
def test_list(api, registry):
    open_channels(registry, {"abc123.production": 1, "def456.production": 2})

    response = api.get("/api/v1/connections/")

    assert response.status_code == 200
    assert response.json()["count"] == 2
    assert response.json()["results"] == [
        {"label": "def456.production", "connections": 2},
        {"label": "abc123.production", "connections": 1},
    ]


@pytest.mark.redis
@pytest.mark.parametrize(
    ("endpoint", "message"),
    [("drop", "connections.drop"), ("force_reload", "connections.reload")],
)
def test_drop_and_force_reload(api, registry, endpoint, message):
    opened = open_channels(registry, {"abc123.production": 2, "def456.production": 1})

    response = api.post(
        f"/api/v1/connections/{endpoint}/",
        {"labels": ["abc*"], "interval_ms": 5},
        format="json",
    )

    assert response.status_code == 200
    assert response.json() == {
        "count": 2,
        "labels": ["abc123.production"],
        "unreachable": 0,
        "dry_run": False,
    }
    got = inbox([c for channels in opened.values() for c in channels])
    for channel in opened["abc123.production"]:
        assert got[channel] == [{"type": message}]
    assert got[opened["def456.production"][0]] == []


@pytest.mark.redis
def test_dry_run_sends_nothing(api, registry):
    opened = open_channels(registry, {"abc123.production": 2})

    response = api.post("/api/v1/connections/drop/", {"dry_run": True}, format="json")

    assert response.json()["count"] == 2
    assert response.json()["dry_run"] is True
    assert inbox(opened["abc123.production"]) == {
        c: [] for c in opened["abc123.production"]
    }


@pytest.mark.redis
def test_negative_interval_is_refused(api, registry):
    response = api.post("/api/v1/connections/drop/", {"interval_ms": -1}, format="json")

    assert response.status_code == 400
    assert "interval_ms" in response.json()["detail"]


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)  # DRF marks a test's transaction for rollback
@pytest.mark.parametrize("delay", [False, True])
@pytest.mark.parametrize("spread_ms", [-1, 3_600_001, "soon", True, 1.5, 2**63])
def test_a_bad_spread_is_refused_before_anything_is_sent(
    api, registry, settings, delay, spread_ms
):
    settings.STAGEHAND_HAS_BROKER = True  # the queued path checks it as well
    opened = open_channels(registry, {"abc123.production": 1})["abc123.production"]

    response = api.post(
        "/api/v1/connections/drop/",
        {"spread_ms": spread_ms, "delay": delay},
        format="json",
    )

    assert response.status_code == 400
    assert "spread_ms" in response.json()["detail"]
    assert inbox(opened) == {opened[0]: []}
    assert not JobRun.objects.exists()


def test_in_memory_layer_is_refused(api, in_memory_layer):
    response = api.get("/api/v1/connections/")

    assert response.status_code == 503
    assert response.json()["error"] == "connections.needs_redis"
    assert "set REDIS_URL" in response.json()["detail"]


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)  # DRF marks a test's transaction for rollback
def test_delay_needs_a_broker(api, registry, settings):
    settings.STAGEHAND_HAS_BROKER = False
    response = api.post(
        "/api/v1/connections/force_reload/",
        {"labels": ["abc*"], "interval_ms": 50, "delay": True},
        format="json",
    )
    assert response.status_code == 503
    assert response.json()["error"] == "jobs.no_broker"
    assert not JobRun.objects.exists()
