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
from .errors import JobError, NoBroker

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


# Munin's defaults for the waiting-task fields; `--warning`/`--critical` change them.
MUNIN_WARNING = 100
MUNIN_CRITICAL = 1000


def munin_config(
    queues: list[str] | None = None,
    warning: int = MUNIN_WARNING,
    critical: int = MUNIN_CRITICAL,
) -> list[str]:
    """Return the Munin plugin config.

    One queue: a graph of its ``total`` and one field per job. Several queues, or none
    given (every queue the workers consume): one graph with a field per queue.
    """
    names = queues or default_queues()
    limits = [f"{{field}}.warning {warning}", f"{{field}}.critical {critical}"]
    if len(names) == 1:
        queue = names[0]
        lines = [
            f"graph_title Waiting tasks in queue {queue}",
            "graph_vlabel tasks",
            "graph_category celery",
            "graph_args --lower-limit 0",
            f"graph_info Tasks waiting in the Celery queue {queue} for a worker, "
            "in total and per job (per job on Redis brokers only).",
            "total.label total",
            "total.info every task waiting in the queue",
            *(limit.format(field="total") for limit in limits),
        ]
        for job in all_jobs():
            lines.append(f"{munin_field(job.task_name)}.label {job.task_name}")
        return lines
    lines = [
        "graph_title Waiting tasks per queue",
        "graph_vlabel tasks",
        "graph_category celery",
        "graph_args --lower-limit 0",
        "graph_info Tasks waiting for a worker in each Celery queue of Stagehand.",
    ]
    for queue in names:
        field = munin_field(queue)
        lines += [
            f"{field}.label {queue}",
            *(limit.format(field=field) for limit in limits),
        ]
    return lines


def munin_values(
    statuses: list[QueueStatus] | None, queues: list[str] | None = None
) -> list[str]:
    """Return Munin values for the fields of ``munin_config(queues)``.

    ``statuses`` None means the broker could not be read: every value is ``U``
    (unknown), which Munin draws as a gap instead of a misleading zero.
    """
    names = queues or default_queues()
    by_queue = {s.queue: s for s in statuses or []}
    if len(names) == 1:
        status = by_queue.get(names[0])
        lines = [f"total.value {status.waiting if status else 'U'}"]
        for job in all_jobs():
            known = status is not None and status.tasks is not None
            value = status.tasks.get(job.task_name, 0) if known else "U"
            lines.append(f"{munin_field(job.task_name)}.value {value}")
        return lines
    return [
        f"{munin_field(q)}.value "
        + (str(by_queue[q].waiting) if q in by_queue else "U")
        for q in names
    ]


def munin_autoconf(broker: str | None = None) -> str:
    """Return Munin's autoconf answer: ``yes``, or ``no (why)``."""
    try:
        queue_status(broker=broker)
    except JobError as exc:
        return f"no ({exc})"
    return "yes"


def start_worker(options: list[str]) -> None:
    """Run a Celery worker for this project in this process, with celery's options."""
    if not settings.STAGEHAND_HAS_BROKER:
        raise NoBroker(
            "A worker takes its tasks from a broker, and none is configured: set "
            "CELERY_BROKER_URL (redis://… or amqp://…) and run `worker start` again. "
            "Without a broker no worker is needed: `jobs run JOB` runs a job here."
        )
    _celery_app().worker_main(["worker", *options])
