"""worker status on a real Redis queue and on RabbitMQ; munin formats; worker start."""

import json
import os
import subprocess
import sys
import uuid

import pytest
import redis
from celery import Celery
from django.conf import settings
from django.core.management import CommandError

from apps.jobs.services import munin_field
from tests.helpers import call

from .conftest import BASE_DIR


@pytest.fixture
def redis_queue():
    """A fresh queue on the Redis broker (REDIS_URL's database), deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(settings.REDIS_URL)
    app = Celery("queue-filler", broker=settings.REDIS_URL, set_as_current=False)
    yield app, name
    client.delete(name, *(f"{name}\x06\x16{p}" for p in (3, 6, 9)))
    client.close()
    app.close()


@pytest.mark.redis
def test_status_counts_every_priority_sub_queue_per_task(redis_queue):
    app, queue = redis_queue
    for priority in (0, 0, 5, 9):
        app.send_task("stagehand.log-test", queue=queue, priority=priority)
    app.send_task("stagehand.error-test", queue=queue, priority=3)
    output = call("worker", "status", "-b", settings.REDIS_URL, "-q", queue)
    rows = [line.split() for line in output.splitlines()]
    assert rows[0] == ["queue", "task", "waiting"]
    assert rows[1:4] == [
        [queue, "(all)", "5"],
        [queue, "stagehand.log-test", "4"],
        [queue, "stagehand.error-test", "1"],
    ]
    assert "✔ 5 waiting tasks in 1 queue" in output

    data = json.loads(
        call("worker", "status", "-b", settings.REDIS_URL, "-q", queue, "--json")
    )
    assert data == [
        {
            "queue": queue,
            "waiting": 5,
            "tasks": {"stagehand.log-test": 4, "stagehand.error-test": 1},
        }
    ]

    munin = call("worker", "status", "-b", settings.REDIS_URL, "-q", queue, "--munin")
    lines = munin.splitlines()
    assert lines[0] == "total.value 5"
    assert "stagehand_log_test.value 4" in lines
    assert "stagehand_error_test.value 1" in lines
    assert all(len(line.split()) == 2 for line in lines)


@pytest.mark.redis
def test_an_empty_redis_queue_has_nothing_waiting(redis_queue):
    _, queue = redis_queue
    data = json.loads(
        call("worker", "status", "-b", settings.REDIS_URL, "-q", queue, "--json")
    )
    assert data == [{"queue": queue, "waiting": 0, "tasks": {}}]


@pytest.mark.rabbitmq
def test_status_reads_the_rabbitmq_message_count():
    url = os.environ["RABBITMQ_URL"]
    queue = f"stagehand-test-{uuid.uuid4().hex[:8]}"
    app = Celery("rabbit-filler", broker=url, set_as_current=False)
    # Each publish waits for RabbitMQ's confirm: without it the third message may
    # still be on its way when the count is read (seen: 1 instead of 3 in CI).
    app.conf.broker_transport_options = {"confirm_publish": True}
    try:
        for _ in range(3):
            app.send_task("stagehand.log-test", queue=queue)
        output = call(
            "worker", "status", "-b", url, "-q", queue, "-q", "never-declared-queue"
        )
        rows = [line.split() for line in output.splitlines()]
        assert [queue, "(all)", "3"] in rows
        assert ["never-declared-queue", "(all)", "0"] in rows
        munin = call("worker", "status", "-b", url, "-q", queue, "--munin").splitlines()
        assert munin[0] == "total.value 3"
        assert "stagehand_log_test.value U" in munin
    finally:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
        app.close()


def test_munin_config_lists_total_and_every_job():
    lines = call("worker", "status", "--munin-config", "-q", "celery").splitlines()
    assert lines[:4] == [
        "graph_title Waiting tasks in queue celery",
        "graph_vlabel tasks",
        "graph_category celery",
        "graph_args --lower-limit 0",
    ]
    assert lines[4].startswith("graph_info Tasks waiting in the Celery queue celery")
    assert "total.label total" in lines
    assert "total.warning 100" in lines and "total.critical 1000" in lines
    assert "stagehand_log_test.label stagehand.log-test" in lines
    fields = [line.split(".", 1)[0] for line in lines if not line.startswith("graph")]
    assert all(f.replace("_", "a").isalnum() and not f[0].isdigit() for f in fields)


def test_munin_config_without_a_queue_graphs_every_queue_of_the_workers(settings):
    # The project's workers consume one queue: its graph, as with -q celery.
    assert call("worker", "status", "--munin-config") == call(
        "worker", "status", "--munin-config", "-q", "celery"
    )
    lines = call(
        "worker",
        "status",
        "--munin-config",
        "-q",
        "celery",
        "-q",
        "bulk-2",
        "--warning",
        "5",
        "--critical",
        "50",
    ).splitlines()
    assert lines[0] == "graph_title Waiting tasks per queue"
    assert any(line.startswith("graph_info ") for line in lines)
    assert lines[-6:] == [
        "celery.label celery",
        "celery.warning 5",
        "celery.critical 50",
        "bulk_2.label bulk-2",
        "bulk_2.warning 5",
        "bulk_2.critical 50",
    ]


def test_munin_thresholds_must_be_in_order():
    with pytest.raises(CommandError, match="0 <= warning <= critical"):
        call("worker", "status", "--munin-config", "--warning", "10", "--critical", "5")


def test_munin_values_are_unknown_and_exit_0_when_the_broker_is_down(settings):
    lines = call(
        "worker", "status", "-b", "redis://127.0.0.1:1/0", "--munin"
    ).splitlines()
    assert lines[0] == "total.value U"
    assert "stagehand_log_test.value U" in lines
    two = call(
        "worker",
        "status",
        "-b",
        "redis://127.0.0.1:1/0",
        "--munin",
        "-q",
        "a",
        "-q",
        "b",
    )
    assert two.splitlines() == ["a.value U", "b.value U"]
    settings.STAGEHAND_HAS_BROKER = False
    assert call("worker", "status", "--munin").splitlines()[0] == "total.value U"


@pytest.mark.redis
def test_munin_values_per_queue(redis_queue):
    app, queue = redis_queue
    for _ in range(2):
        app.send_task("stagehand.log-test", queue=queue)
    lines = call(
        "worker",
        "status",
        "-b",
        settings.REDIS_URL,
        "--munin",
        "-q",
        queue,
        "-q",
        "empty-q",
    ).splitlines()
    assert lines == [f"{munin_field(queue)}.value 2", "empty_q.value 0"]


@pytest.mark.redis
def test_munin_autoconf_says_yes_when_the_broker_answers():
    assert (
        call("worker", "status", "-b", settings.REDIS_URL, "--munin-autoconf")
        == "yes\n"
    )


def test_munin_autoconf_says_no_and_why_with_exit_0(settings):
    answer = call("worker", "status", "-b", "redis://127.0.0.1:1/0", "--munin-autoconf")
    assert answer.startswith("no (Cannot read the queues from the broker")
    settings.STAGEHAND_HAS_BROKER = False
    assert call("worker", "status", "--munin-autoconf").startswith(
        "no (Reading the queues"
    )


def test_status_needs_a_broker(settings):
    settings.STAGEHAND_HAS_BROKER = False
    with pytest.raises(CommandError, match="needs a broker: set CELERY_BROKER_URL"):
        call("worker", "status")


def test_unreachable_broker_is_an_error():
    with pytest.raises(CommandError, match="Cannot read the queues from the broker"):
        call("worker", "status", "-b", "redis://127.0.0.1:1/0")


def test_worker_start_without_a_broker_says_so(base_env):
    env = {**base_env, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    env.pop("CELERY_BROKER_URL", None)
    done = subprocess.run(
        [sys.executable, "manage.py", "worker", "start", "--pool=solo", "-c", "1"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "A worker takes its tasks from a broker" in done.stderr
    assert "set CELERY_BROKER_URL" in done.stderr
    # Not the message meant for `jobs run -d`.
    assert "-d" not in done.stderr and "Traceback" not in done.stderr
