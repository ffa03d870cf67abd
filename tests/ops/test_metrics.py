"""/metrics: Prometheus' text format, for the bearer token or a staff user."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from channels.layers import get_channel_layer
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect as websocket

from apps.connections.registry import get_registry
from apps.jobs import services as jobs
from apps.jobs.models import BeatLock, JobRun
from config.celery_app import app
from tests.backups.conftest import write_consistent_backup
from tests.connections.server import Server
from tests.helpers import manage
from tests.ops.helpers import connect

pytestmark = pytest.mark.django_db

TOKEN = "scrape-" + "x" * 40


def scrape(client, **headers) -> dict[tuple[str, tuple], float]:
    """Scrape /metrics with ``headers``; return every sample by name and labels."""
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content.decode()
    assert response["Content-Type"].startswith("text/plain; version=")
    return samples(response.content.decode())


def samples(text: str) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.fixture
def token(settings):
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


def test_without_token_or_staff_it_says_how_to_get_in(client, token, django_user_model):
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert "Authorization: Bearer <METRICS_TOKEN>" in response.content.decode()
    assert TOKEN not in response.content.decode()
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer " + TOKEN[:-1])
    assert wrong.status_code == 401
    basic = client.get("/metrics", HTTP_AUTHORIZATION="Basic " + TOKEN)
    assert basic.status_code == 401
    client.force_login(django_user_model.objects.create_user("bob", password="x"))
    assert client.get("/metrics").status_code == 401  # logged in, but not staff


def test_no_token_set_means_staff_only(client, settings):
    settings.METRICS_TOKEN = ""
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer ")
    assert response.status_code == 401
    assert "set METRICS_TOKEN" in response.content.decode()


def test_a_staff_user_may_look(client, alice, var_dir):
    client.force_login(alice)
    found = scrape(client)
    assert found[("stagehand_source_up", (("source", "jobs"),))] == 1


def test_job_runs_by_job_and_outcome_with_durations(client, token, var_dir):
    now = timezone.now()
    for outcome, duration in (("success", 1.5), ("success", 2.5), ("failure", 0.25)):
        JobRun.objects.create(
            job="backup",
            trigger="beat",
            outcome=outcome,
            started_at=now,
            duration=duration,
        )
    JobRun.objects.create(job="purge", trigger="shell", outcome="queued")
    found = scrape(client, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    backup_ok = (("job", "backup"), ("outcome", "success"))
    assert found[("stagehand_job_runs_total", backup_ok)] == 2
    assert found[("stagehand_job_run_duration_seconds_count", backup_ok)] == 2
    assert found[("stagehand_job_run_duration_seconds_sum", backup_ok)] == 4.0
    failed = (("job", "backup"), ("outcome", "failure"))
    assert found[("stagehand_job_run_duration_seconds_sum", failed)] == 0.25
    assert (
        found[("stagehand_job_runs_total", (("job", "purge"), ("outcome", "queued")))]
        == 1
    )
    # A queued run has no duration yet: no summary for it.
    queued = (("job", "purge"), ("outcome", "queued"))
    assert ("stagehand_job_run_duration_seconds_count", queued) not in found
    last = found[("stagehand_job_last_success_timestamp_seconds", (("job", "backup"),))]
    assert last == pytest.approx(now.timestamp())


def test_backups_by_state_and_the_newest_complete_ones_age(client, token, var_dir):
    folder = Path(storages["backups"].location) / "backup"
    taken = timezone.now() - dt.timedelta(minutes=10)
    write_consistent_backup(
        folder, f"postgresql-backup-{taken:%Y%m%d%H%M%S}.dump", b"PGDMP"
    )
    storages["backups"].save(
        "backup/postgresql-backup-20261123030000.dump", ContentFile(b"x")
    )
    found = scrape(client, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert found[("stagehand_backups", (("state", "complete"),))] == 1
    assert found[("stagehand_backups", (("state", "incomplete"),))] == 1
    age = found[("stagehand_backup_newest_age_seconds", ())]
    assert age == pytest.approx(600, abs=60)


def test_the_embedded_defaults_leave_out_what_they_do_not_have(
    client, token, settings, var_dir
):
    settings.REDIS_URL = ""
    settings.STAGEHAND_HAS_BROKER = False
    found = scrape(client, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    sources = {
        dict(labels)["source"]: value
        for (name, labels), value in found.items()
        if name == "stagehand_source_up"
    }
    # Connections, queues and beat need Redis and a broker: not configured, not down.
    assert sources == {"jobs": 1, "backups": 1}
    assert not any(name == "stagehand_connections" for name, _ in found)
    assert ("process_resident_memory_bytes", ()) in found


def test_a_source_that_does_not_answer_is_reported_down(
    client, token, settings, var_dir
):
    settings.STAGEHAND_HAS_BROKER = True
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    found = scrape(client, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert found[("stagehand_source_up", (("source", "queues"),))] == 0
    assert found[("stagehand_source_up", (("source", "jobs"),))] == 1


@pytest.mark.redis
def test_connections_per_label_queue_depths_and_the_beat_lease(
    client, token, settings, var_dir, broker_env
):
    registry = get_registry()
    registry.clear()
    try:
        layer = get_channel_layer()
        for _ in range(3):
            connect(layer, "abc123.production")
        connect(layer, "def456.production")

        settings.STAGEHAND_HAS_BROKER = True
        settings.CELERY_BROKER_URL = broker_env["CELERY_BROKER_URL"]
        jobs.hold_beat_lock("beat@host", ttl=settings.BEAT_LOCK_TTL)
        BeatLock.objects.filter(name=jobs.BEAT_LOCK).update(
            expires_at=timezone.now()
            + dt.timedelta(seconds=settings.BEAT_LOCK_TTL - 42)
        )
        with app.connection_for_write(settings.CELERY_BROKER_URL) as conn:
            conn.default_channel.queue_purge("celery")
            queue = conn.SimpleQueue("celery")  # Celery's default queue
            for number in range(2):
                queue.put({"probe": number}, headers={"task": "metrics-probe"})
            queue.close()
            found = scrape(client, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
            conn.default_channel.queue_purge("celery")
    finally:
        registry.clear()
    assert found[("stagehand_connections", (("label", "abc123.production"),))] == 3
    assert found[("stagehand_connections", (("label", "def456.production"),))] == 1
    assert found[("stagehand_beat_lease_age_seconds", ())] == pytest.approx(42, abs=5)
    assert found[("stagehand_queue_waiting", (("queue", "celery"),))] == 2


# --------------------------------------------------------------------------- process


def get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_a_server_process_counts_its_requests_and_websockets(child_env):
    """uvicorn on the embedded defaults, as `backend start` runs it."""
    env = {**child_env, "METRICS_TOKEN": TOKEN}
    manage(env, "migrate", "--no-input")
    server = Server(env)
    try:
        server.wait_ready()
        base = f"http://127.0.0.1:{server.port}"
        assert get(f"{base}/nowhere")[0] == 404
        assert get(f"{base}/metrics")[0] == 401

        async def visit() -> None:
            async with websocket(f"{server.url}/ws/world/nosuchworld/") as ws:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert frame[0] == "error", frame

        asyncio.run(visit())
        status, text = get(f"{base}/metrics", TOKEN)
    finally:
        server.stop()
    assert status == 200, text
    found = samples(text)
    requests = {
        dict(labels)["status"]: value
        for (name, labels), value in found.items()
        if name == "stagehand_http_requests_total" and dict(labels)["method"] == "GET"
    }
    # wait_ready's /healthz (one or more), the 404 and the 401; the 200 of this
    # scrape is counted once its response starts, after the body was written.
    assert requests["404"] == 1 and requests["401"] == 1 and requests["200"] >= 1
    assert found[("stagehand_websocket_connections_total", ())] == 1
    assert found[("stagehand_websocket_open", ())] == 0
    assert found[("stagehand_source_up", (("source", "jobs"),))] == 1
