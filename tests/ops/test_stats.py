"""`stats`: one status per component, with and without a worker running."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.management import CommandError

from apps.connections.registry import get_registry
from apps.ops import backend
from tests.helpers import call, free_port, manage, wait_for
from tests.ops.helpers import SLEEPER, connect


@pytest.mark.django_db
def test_stats_on_embedded_defaults_is_ok_and_says_what_is_not_configured(var_dir):
    output = call("stats")
    rows = {line.split()[0]: line for line in output.splitlines()[1:-1]}
    assert rows["workers"].split()[1:3] == ["not", "configured"]
    assert "no broker (CELERY_BROKER_URL)" in rows["workers"]
    assert "none recorded in" in rows["processes"]
    assert rows["database"].split()[1] == "ok"
    assert output.splitlines()[-1] == "Every component is ok."

    data = {c["name"]: c for c in json.loads(call("stats", "--json"))}
    assert list(data) == [
        "processes",
        "workers",
        "queues",
        "beat",
        "connections",
        "database",
        "cache",
        "channel layer",
        "broker",
        "storage",
    ]
    # An unconfigured component says so, in JSON as in the table (it used to say
    # "ok", so `watch` never showed one coming up).
    # (connections too, unless REDIS_URL gives a shared channel layer).
    not_ok = {n: c["status"] for n, c in data.items() if c["status"] != "ok"}
    assert set(not_ok.values()) == {"not configured"}
    assert {"processes", "workers", "queues", "beat", "broker"} <= set(not_ok)
    assert {n for n, c in data.items() if not c["configured"]} == set(not_ok)
    assert all(c["ok"] for c in data.values())
    assert data["workers"]["configured"] is False
    assert data["database"]["figures"]["engine"]


@pytest.mark.django_db
def test_stats_counts_recorded_processes_and_fails_on_a_stale_one(var_dir):
    child = subprocess.Popen(SLEEPER)
    try:
        backend.ProcessRecord.for_pid("server", "server", child.pid, SLEEPER).write()
        data = {c["name"]: c for c in json.loads(call("stats", "--json"))}
        assert data["processes"]["status"] == "ok"
        assert data["processes"]["figures"]["processes"][0]["pid"] == child.pid
    finally:
        child.kill()
        child.wait()
    with pytest.raises(CommandError, match="unavailable: processes") as raised:
        call("stats")
    assert raised.value.returncode == 2


def broker_env(child_env: dict, broker: str) -> dict:
    return {**child_env, "CELERY_BROKER_URL": broker}


def stats_of(env: dict) -> tuple[int, dict]:
    result = manage(env, "stats", "--json", check=False)
    return result.returncode, {c["name"]: c for c in json.loads(result.stdout)}


@pytest.mark.redis
def test_stats_with_and_without_a_worker_running(child_env):
    env = broker_env(child_env, settings.REDIS_URL)
    manage(env, "migrate", "--noinput", "-v0", check=True)
    celery = [sys.executable, "-m", "celery", "-A", "config.celery_app"]
    subprocess.run([*celery, "purge", "-f"], env=env, check=True, capture_output=True)
    # One task waiting, nobody to run it.
    manage(
        env,
        "shell",
        "-c",
        "from config.celery_app import app; app.send_task('stagehand.ops-test-noop')",
        check=True,
    )

    code, before = stats_of(env)
    assert code == 2
    assert before["workers"]["status"] == "unavailable"
    assert "no worker answered" in before["workers"]["detail"]
    assert before["queues"]["status"] == "ok"
    assert before["queues"]["figures"]["waiting"]["celery"] == 1
    assert before["beat"]["status"] == "unavailable"
    assert "no beat has ticked" in before["beat"]["detail"]
    assert before["broker"]["status"] == "ok"

    port = free_port()
    manage(
        env,
        "backend",
        "start",
        "--detach",
        "--workers",
        "1",
        "--concurrency",
        "1",
        "--bind",
        f"127.0.0.1:{port}",
        check=True,
    )
    try:
        after = wait_for(
            lambda: (s := stats_of(env))[0] == 0 and s[1],
            "every component to be ok with the backend running",
            timeout=90,
        )
        workers = after["workers"]["figures"]["workers"]
        assert len(workers) == 1
        (worker,) = workers.values()
        assert worker["concurrency"] == 1
        assert after["processes"]["figures"]["running"] == 4
        assert after["beat"]["status"] == "ok"
        assert after["beat"]["figures"]["last_tick"]
        # The worker took the waiting task off the queue (and rejected it: unknown).
        wait_for(
            lambda: stats_of(env)[1]["queues"]["figures"]["waiting"]["celery"] == 0,
            "the queue to drain",
        )
    finally:
        stopped = manage(env, "backend", "stop", check=False)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr


@pytest.mark.rabbitmq
def test_stats_reads_rabbitmq_queues_without_a_worker(child_env):
    env = broker_env(child_env, os.environ["RABBITMQ_URL"])
    manage(env, "migrate", "--noinput", "-v0", check=True)
    code, data = stats_of(env)
    assert code == 2
    assert data["broker"]["status"] == "ok"
    assert data["broker"]["backend"] == "amqp"
    assert data["queues"]["status"] == "ok"
    assert "celery" in data["queues"]["figures"]["waiting"]
    assert data["workers"]["status"] == "unavailable"


@pytest.mark.redis
@pytest.mark.django_db
def test_stats_counts_live_connections_per_label(var_dir):
    layer = get_channel_layer()
    registry = get_registry()
    registry.clear()
    try:
        connect(layer, "abc123.production")
        connect(layer, "abc123.production")
        connect(layer, "def456.production")
        data = {c["name"]: c for c in json.loads(call("stats", "--json"))}
    finally:
        registry.clear()
    connections = data["connections"]
    assert connections["status"] == "ok"
    assert connections["figures"]["labels"] == {
        "abc123.production": 2,
        "def456.production": 1,
    }
    assert "abc123.production: 2" in connections["detail"]


@pytest.mark.django_db
def test_stats_says_connections_need_redis(var_dir, settings):
    settings.REDIS_URL = ""
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    }
    data = {c["name"]: c for c in json.loads(call("stats", "--json"))}
    assert data["connections"]["configured"] is False
    assert "in-memory channel layer" in data["connections"]["detail"]
