"""Workers and queues: what waits in the broker, Munin's view of it, and
starting a worker."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from config.celery_app import app as celery_app

from ..catalog import all_jobs
from .errors import JobError
from .runs import require_broker

SCAN_CHUNK = 1000


@dataclass
class QueueStatus:
    queue: str
    waiting: int
    # Waiting messages per task name; None when the broker cannot tell (RabbitMQ).
    tasks: dict[str, int] | None

    def as_dict(self) -> dict[str, Any]:
        return {"queue": self.queue, "waiting": self.waiting, "tasks": self.tasks}


def _celery_app() -> Any:
    return celery_app


def default_queues() -> list[str]:
    """Return the queues this project's workers consume by default."""
    conf = _celery_app().conf
    names = [conf.task_default_queue]
    for queue in conf.task_queues or []:
        if queue.name not in names:
            names.append(queue.name)
    return names


def broker_url(override: str | None = None) -> str:
    """Return the broker to read from; JobError when there is none."""
    if override:
        return override
    if not settings.STAGEHAND_HAS_BROKER:
        raise JobError(
            "Reading the queues needs a broker: set CELERY_BROKER_URL "
            "(or pass --broker URL)."
        )
    return settings.CELERY_BROKER_URL


def queue_status(
    queues: list[str] | None = None, broker: str | None = None
) -> list[QueueStatus]:
    """Return how many tasks wait in each queue, and per task when the broker can tell.

    Redis: every priority sub-queue counts (``celery``, ``celery\\x06\\x163``, …, as
    Flower counts them) and the messages are read to count them per task. RabbitMQ:
    the queue's message count (a passive declare; a queue that does not exist yet
    has no messages).
    """
    names = queues or default_queues()
    app = _celery_app()
    try:
        with app.connection_for_read(broker_url(broker)) as conn:
            conn.ensure_connection(max_retries=1)
            driver = conn.transport.driver_type
            if driver == "redis":
                return [_redis_queue(conn, name) for name in names]
            if driver == "amqp":
                return [_amqp_queue(conn, name) for name in names]
    except JobError:
        raise
    except Exception as exc:
        raise JobError(
            f"Cannot read the queues from the broker ({type(exc).__name__}: {exc}); "
            "check CELERY_BROKER_URL with `info`."
        ) from exc
    raise JobError(f"worker status reads Redis and RabbitMQ brokers, not {driver}.")


def _redis_queue(conn: Any, name: str) -> QueueStatus:
    channel = conn.default_channel
    # The channel's client adds the transport's global_keyprefix itself.
    client = channel.client
    keys = [
        name if not p else f"{name}{channel.sep}{p}" for p in channel.priority_steps
    ]
    tasks: dict[str, int] = {}
    waiting = 0
    for key in keys:
        length = client.llen(key)
        waiting += length
        for start in range(0, length, SCAN_CHUNK):
            for raw in client.lrange(key, start, start + SCAN_CHUNK - 1):
                task = _task_of(raw)
                tasks[task] = tasks.get(task, 0) + 1
    ordered = dict(sorted(tasks.items(), key=lambda item: (-item[1], item[0])))
    return QueueStatus(queue=name, waiting=waiting, tasks=ordered)


def _task_of(raw: bytes) -> str:
    try:
        message = json.loads(raw)
        headers = message.get("headers") or {}
        return headers.get("task") or "?"
    except (ValueError, AttributeError):
        return "?"


def _amqp_queue(conn: Any, name: str) -> QueueStatus:
    channel = conn.channel()
    try:
        _, count, _ = channel.queue_declare(queue=name, passive=True)
    except conn.channel_errors:
        count = 0  # never declared: nothing waits in it
    finally:
        try:
            channel.close()
        except Exception:  # noqa: BLE001 - a 404 already closed it
            pass
    return QueueStatus(queue=name, waiting=count, tasks=None)


def munin_field(task: str) -> str:
    """Return a Munin field name for a task name (letters, digits and _ only)."""
    field = re.sub(r"[^A-Za-z0-9_]", "_", task)
    return field if not field[:1].isdigit() else "_" + field


def munin_config(queue: str) -> list[str]:
    """Return the Munin plugin config for one queue: a total and one line per job."""
    lines = [
        f"graph_title Waiting tasks in queue {queue}",
        "graph_vlabel tasks",
        "graph_category celery",
        "graph_args --lower-limit 0",
        "total.label total",
    ]
    for job in all_jobs():
        lines.append(f"{munin_field(job.task_name)}.label {job.task_name}")
    return lines


def munin_values(status: QueueStatus) -> list[str]:
    """Return Munin values for the fields of ``munin_config``; U when unknown."""
    lines = [f"total.value {status.waiting}"]
    for job in all_jobs():
        value = "U" if status.tasks is None else status.tasks.get(job.task_name, 0)
        lines.append(f"{munin_field(job.task_name)}.value {value}")
    return lines


def start_worker(options: list[str]) -> None:
    """Run a Celery worker for this project in this process, with celery's options."""
    require_broker()
    _celery_app().worker_main(["worker", *options])
