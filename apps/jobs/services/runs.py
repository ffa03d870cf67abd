"""Running jobs, here or on the workers, and the record of every run."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery.utils import uuid
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from ..catalog import all_jobs
from ..models import JobRun
from .errors import JobError, NoBroker
from .params import call_label, lookup

logger = logging.getLogger("apps.jobs.services")

TRIGGER_HEADER = "stagehand_trigger"
# Celery Beat (django-celery-beat) puts the PeriodicTask's name in this header.
BEAT_HEADER = "periodic_task_name"

MAX_TEXT = 10_000
# A run is lost once this many heartbeats in a row are missing (docs/jobs.md).
MISSED_HEARTBEATS = 3


def heartbeat_interval() -> float:
    """Seconds between two heartbeats of a running job (``JOB_HEARTBEAT``)."""
    return float(getattr(settings, "JOB_HEARTBEAT", 10))


def lost_after() -> float:
    """Seconds without a heartbeat after which a running job counts as lost."""
    return MISSED_HEARTBEATS * heartbeat_interval()


class Heartbeat(threading.Thread):
    """Write ``heartbeat_at`` of a running job every ``interval`` seconds, so that a
    run whose process died (killed, out of memory, its machine gone) can be told
    from one that is still working: see ``mark_lost_runs``.

    A failed write is logged and tried again at the next beat; the thread's own
    database connection is closed when it stops.
    """

    def __init__(self, run_id: int, interval: float) -> None:
        super().__init__(name=f"job-heartbeat-{run_id}", daemon=True)
        self.run_id = run_id
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.interval):
                try:
                    JobRun.objects.filter(
                        pk=self.run_id, outcome=JobRun.Outcome.RUNNING
                    ).update(heartbeat_at=timezone.now())
                except Exception:
                    logger.warning("Job run %s: heartbeat failed", self.run_id)
                    connection.close()  # reopened at the next beat
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopped.set()
        # Not waiting long: a heartbeat stuck on the database must not hold the job.
        self.join(timeout=1)


def mark_lost_runs(now: datetime | None = None) -> int:
    """Mark as ``lost`` every running run whose process stopped beating (no
    heartbeat for ``lost_after()`` seconds); return how many.

    Called wherever runs are read (``history``: ``jobs history``, the API, the
    operations page), so a run whose worker was killed shows as lost within
    ``lost_after()`` seconds of its last heartbeat. A lost run that finishes after
    all (its process was only cut off from the database) records its real outcome.
    """
    cutoff = (now or timezone.now()) - timedelta(seconds=lost_after())
    silent = Q(heartbeat_at__lt=cutoff) | Q(
        heartbeat_at__isnull=True, started_at__lt=cutoff
    )
    return JobRun.objects.filter(silent, outcome=JobRun.Outcome.RUNNING).update(
        outcome=JobRun.Outcome.LOST,
        error=(
            f"No heartbeat for more than {lost_after():g} seconds: the process "
            "running this job stopped (killed, or its machine went away) before "
            "it finished. Check the worker's log, then run the job again."
        ),
    )


def _header(request: Any, name: str) -> Any:
    value = getattr(request, name, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(name)
    return value


def trigger_of(request: Any) -> str:
    """Return who asked for the Celery task being executed: beat, api, admin or worker."""
    if _header(request, BEAT_HEADER):
        return JobRun.Trigger.BEAT
    trigger = _header(request, TRIGGER_HEADER)
    if trigger in JobRun.Trigger.values:
        return trigger
    return JobRun.Trigger.WORKER


def _short(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def execute(
    name: str,
    args: list[Any],
    kwargs: dict[str, Any],
    *,
    trigger: str,
    task_id: str = "",
) -> Any:
    """Run the job ``name`` here and now, recording the run; re-raise its error."""
    outcome = _run_recorded(name, args, kwargs, trigger=trigger, task_id=task_id)
    if outcome.error is not None:
        raise outcome.error
    return outcome.result


@dataclass
class RunOutcome:
    run: JobRun
    result: Any = None
    error: BaseException | None = None


_current_run: ContextVar[JobRun | None] = ContextVar("current_run", default=None)


def current_run() -> JobRun | None:
    """Return the run being recorded around the calling code, if any.

    A restore uses it to carry its own run into the database it swaps in.
    """
    return _current_run.get()


class Recording:
    """The run being recorded by ``recorded``: set ``result`` to keep a summary."""

    def __init__(self, run: JobRun):
        self.run = run
        self.result: Any = None


@contextmanager
def recorded(
    name: str,
    args: list[Any],
    kwargs: dict[str, Any],
    *,
    trigger: str,
    task_id: str = "",
) -> Iterator[Recording]:
    """Record the work done inside the block as a run of job ``name``.

    A run queued by ``send`` already has a row (found by task id); it is claimed
    with a conditional update so a redelivered message cannot take over a finished
    run. An exception is recorded with its traceback and propagates.
    """
    started = timezone.now()
    claimed = 0
    if task_id:
        claimed = JobRun.objects.filter(
            task_id=task_id, outcome=JobRun.Outcome.QUEUED
        ).update(
            outcome=JobRun.Outcome.RUNNING, started_at=started, heartbeat_at=started
        )
    if claimed:
        run = JobRun.objects.filter(task_id=task_id).latest("id")
    else:
        run = JobRun.objects.create(
            job=name,
            args=args,
            kwargs=kwargs,
            trigger=trigger,
            task_id=task_id,
            started_at=started,
            heartbeat_at=started,
        )
    recording = Recording(run)
    clock = time.monotonic()
    heartbeat = Heartbeat(run.pk, heartbeat_interval())
    heartbeat.start()
    token = _current_run.set(run)
    try:
        yield recording
    except BaseException as exc:
        _current_run.reset(token)
        heartbeat.stop()
        run.outcome = JobRun.Outcome.FAILURE
        run.error = _short(traceback.format_exc())
        run.duration = time.monotonic() - clock
        run.save(update_fields=["outcome", "error", "duration"])
        logger.error("Job %s failed: %r", call_label(name, args, kwargs), exc)
        raise
    _current_run.reset(token)
    heartbeat.stop()
    run.outcome = JobRun.Outcome.SUCCESS
    result = recording.result
    run.result = "" if result is None else _short(str(result))
    run.duration = time.monotonic() - clock
    run.save(update_fields=["outcome", "result", "duration"])


def _run_recorded(
    name: str,
    args: list[Any],
    kwargs: dict[str, Any],
    *,
    trigger: str,
    task_id: str = "",
) -> RunOutcome:
    job = lookup(name)
    holder: list[Recording] = []
    try:
        with recorded(name, args, kwargs, trigger=trigger, task_id=task_id) as rec:
            holder.append(rec)
            rec.result = job.func(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - recorded, then handed back
        if not holder:  # the run could not even be recorded
            raise
        return RunOutcome(run=holder[0].run, error=exc)
    return RunOutcome(run=holder[0].run, result=holder[0].result)


def run(
    name: str,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    *,
    trigger: str = JobRun.Trigger.SHELL,
) -> RunOutcome:
    """Run a job in this process; return its recorded run and its result or error."""
    return _run_recorded(name, list(args or []), dict(kwargs or {}), trigger=trigger)


def require_broker() -> None:
    if not settings.STAGEHAND_HAS_BROKER:
        raise NoBroker(
            "Sending jobs to the workers needs a broker: set CELERY_BROKER_URL "
            "(redis://… or amqp://…) and start workers with `worker start`; "
            "without -d the job runs here."
        )


def send(
    name: str,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    *,
    trigger: str = JobRun.Trigger.WORKER,
) -> JobRun:
    """Queue a job for the workers and record it as queued; return the run.

    The message leaves only when the surrounding transaction commits, so a worker
    always finds the queued row.
    """
    require_broker()
    job = lookup(name)
    args, kwargs = list(args or []), dict(kwargs or {})
    run = JobRun.objects.create(
        job=name,
        args=args,
        kwargs=kwargs,
        trigger=trigger,
        outcome=JobRun.Outcome.QUEUED,
        queued_at=timezone.now(),
        task_id=uuid(),
    )

    def publish() -> None:
        try:
            job.task.apply_async(
                args, kwargs, task_id=run.task_id, headers={TRIGGER_HEADER: trigger}
            )
        except Exception as exc:
            JobRun.objects.filter(pk=run.pk, outcome=JobRun.Outcome.QUEUED).update(
                outcome=JobRun.Outcome.FAILURE,
                error=f"The broker refused the job: {exc!r}",
            )
            raise JobError(
                f"The broker refused the job ({exc}); check CELERY_BROKER_URL "
                "with `info`."
            ) from exc

    transaction.on_commit(publish, robust=False)
    return run


def runs_of(name: str | None = None) -> QuerySet[JobRun]:
    """Return the runs, newest first, of one job or of all (UnknownJob, with
    suggestions, for a name neither registered nor ever run); runs whose process
    died are marked lost first (``mark_lost_runs``)."""
    mark_lost_runs()
    if name is not None and name not in {j.name for j in all_jobs()}:
        if not JobRun.objects.filter(job=name).exists():
            lookup(name)  # raises with suggestions
    runs = JobRun.objects.all()
    if name:
        runs = runs.filter(job=name)
    return runs.order_by("-id")


def history(name: str | None = None, limit: int = 20) -> list[JobRun]:
    """Return the latest ``limit`` runs, newest first, of one job or of all."""
    return list(runs_of(name)[:limit])
