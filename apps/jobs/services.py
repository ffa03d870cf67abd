"""Jobs: run them, send them to the workers, schedule them, and remember every run.

The ``jobs``, ``worker`` and ``cache`` commands, the admin and the REST API all call
these functions. Errors are ``JobError`` with a message that says what to do.
"""

from __future__ import annotations

import difflib
import inspect
import json
import logging
import time
import traceback
import types
import typing
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

from celery.schedules import crontab_parser
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core.output import counted

from .models import DefaultSchedule, JobRun
from .registry import Job, all_jobs, get_job

logger = logging.getLogger(__name__)

TRIGGER_HEADER = "stagehand_trigger"
# Celery Beat (django-celery-beat) puts the PeriodicTask's name in this header.
BEAT_HEADER = "periodic_task_name"

CRON_ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

# Default schedules installed on migrate (see install_default_schedules).
DEFAULT_SCHEDULES = {"purge": "0 3 * * *", "search-index": "30 1 * * *"}

MAX_TEXT = 10_000


class JobError(Exception):
    """A job request that cannot be carried out; the message says what to do."""


class UnknownJob(JobError):
    pass


class InvalidCron(JobError):
    pass


class NoBroker(JobError):
    pass


class InvalidParams(JobError):
    pass


# Parameters and labels
# ------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def parse_value(text: str) -> Any:
    """Return ``text`` as the JSON value it spells (``3``, ``true``, ``null``, ``"x"``)
    or, when it is not JSON, as the string itself."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return text


def parse_params(params: Iterable[str]) -> tuple[list[Any], dict[str, Any]]:
    """Split ``ARG`` and ``KEY=VALUE`` words into args and kwargs.

    A word is a keyword argument when the text before its first ``=`` is an
    identifier, so ``url=http://x/?a=b`` is ``url`` ↦ ``http://x/?a=b`` and ``a=b=c``
    is ``a`` ↦ ``b=c``; anything else is positional.
    """
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for word in params:
        key, sep, value = word.partition("=")
        if sep and key.isidentifier():
            kwargs[key] = parse_value(value)
        else:
            args.append(parse_value(word))
    return args, kwargs


def _literal(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def call_label(name: str, args: list[Any], kwargs: dict[str, Any]) -> str:
    """Return ``name(arg, k=v)``: the job with its normalized parameters."""
    parts = [_literal(a) for a in args]
    parts += [f"{k}={_literal(kwargs[k])}" for k in sorted(kwargs)]
    return f"{name}({', '.join(parts)})"


def lookup(name: str) -> Job:
    """Return the job ``name``; JobError naming the closest known jobs otherwise."""
    try:
        return get_job(name)
    except KeyError:
        names = [j.name for j in all_jobs()]
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UnknownJob(
            f"No job named {name!r}; {hint}`jobs list` shows the {len(names)} known jobs."
        ) from None


def _accepts(annotation: Any, value: Any) -> bool:
    """Whether ``value`` fits ``annotation`` as far as plain types can tell.

    ``true`` is no int here although ``bool`` subclasses ``int`` (``interval_ms=true``
    is a mistake, not 1); an int is a float; annotations other than plain classes,
    unions of them and their generic forms (``list[str]`` checks ``list``) accept all.
    """
    if annotation in (inspect.Parameter.empty, Any):
        return True
    if value is None and annotation is type(None):
        return True
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) in (
        typing.Union,
    ):
        return any(_accepts(a, value) for a in typing.get_args(annotation))
    origin = typing.get_origin(annotation) or annotation
    if not isinstance(origin, type):
        return True
    if isinstance(value, bool) and origin is not bool:
        return origin is object
    if origin is float and isinstance(value, int):
        return True
    return isinstance(value, origin)


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation)


def signature_of(job: Job) -> inspect.Signature:
    """Return the parameters ``job`` takes (annotations resolved, no return type)."""
    return inspect.signature(job.func, eval_str=True).replace(
        return_annotation=inspect.Signature.empty
    )


def params_problem(job: Job, args: list[Any], kwargs: dict[str, Any]) -> str | None:
    """Return why ``job`` cannot be called with these parameters, or None if it can.

    The message names the parameters the job takes, e.g. ``log-test takes
    (message: str = 'log-test')``.
    """
    sig = signature_of(job)
    takes = f"{job.name} takes {sig}" if sig.parameters else f"{job.name} takes none"
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as exc:
        return f"{exc}; {takes}"
    for name, value in bound.arguments.items():
        param = sig.parameters[name]
        if param.kind is param.VAR_POSITIONAL:
            values = list(value)
        elif param.kind is param.VAR_KEYWORD:
            values = list(value.values())
        else:
            values = [value]
        for one in values:
            if not _accepts(param.annotation, one):
                return (
                    f"{name}={_literal(one)} is not {_type_name(param.annotation)}; "
                    f"{takes}"
                )
    return None


def check_params(job: Job, args: list[Any], kwargs: dict[str, Any]) -> None:
    """InvalidParams unless ``job`` can be called with these parameters."""
    problem = params_problem(job, args, kwargs)
    if problem:
        raise InvalidParams(
            f"{call_label(job.name, args, kwargs)} cannot run: {problem}. "
            "`jobs list` describes each job."
        )


# Running and recording
# ------------------------------------------------------------------------------


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
        ).update(outcome=JobRun.Outcome.RUNNING, started_at=started)
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
        )
    recording = Recording(run)
    clock = time.monotonic()
    token = _current_run.set(run)
    try:
        yield recording
    except BaseException as exc:
        _current_run.reset(token)
        run.outcome = JobRun.Outcome.FAILURE
        run.error = _short(traceback.format_exc())
        run.duration = time.monotonic() - clock
        run.save(update_fields=["outcome", "error", "duration"])
        logger.error("Job %s failed: %r", call_label(name, args, kwargs), exc)
        raise
    _current_run.reset(token)
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
    from celery.utils import uuid

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


def history(name: str | None = None, limit: int = 20) -> list[JobRun]:
    """Return the latest runs, newest first, of one job or of all."""
    if name is not None and name not in {j.name for j in all_jobs()}:
        if not JobRun.objects.filter(job=name).exists():
            lookup(name)  # raises with suggestions
    runs = JobRun.objects.all()
    if name:
        runs = runs.filter(job=name)
    return list(runs.order_by("-id")[:limit])


def run_as_dict(run: JobRun) -> dict[str, Any]:
    return {
        "id": run.pk,
        "job": run.job,
        "label": call_label(run.job, run.args, run.kwargs),
        "args": run.args,
        "kwargs": run.kwargs,
        "trigger": run.trigger,
        "outcome": run.outcome,
        "queued_at": run.queued_at.isoformat() if run.queued_at else None,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "duration": run.duration,
        "result": run.result,
        "error": run.error,
        "task_id": run.task_id,
    }


# Schedules
# ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cron:
    minute: str
    hour: str
    day_of_month: str
    month_of_year: str
    day_of_week: str

    def __str__(self) -> str:
        return " ".join(
            (
                self.minute,
                self.hour,
                self.day_of_month,
                self.month_of_year,
                self.day_of_week,
            )
        )


def _sunday_as_zero(day_of_week: str) -> str:
    """Return the day-of-week field with cron's 7 (Sunday, as 0 is) written as 0.

    Celery accepts only 0-6; a field it accepts is kept as typed, one it refuses only
    because of a 7 (``7``, ``5-7``, ``1,7``) becomes the list of its days (``0,5,6``).
    """
    try:
        crontab_parser(7).parse(day_of_week)
        return day_of_week
    except Exception:  # celery raises ValueError and its own ParseException
        pass
    try:
        days = crontab_parser(8).parse(day_of_week)
    except Exception:  # not cron at all: the check in parse_cron says why
        return day_of_week
    return ",".join(str(day) for day in sorted({day % 7 for day in days}))


def parse_cron(expression: str) -> Cron:
    """Return the five fields of a crontab expression or alias; JobError if invalid."""
    from celery.schedules import crontab

    text = CRON_ALIASES.get(expression.strip().lower(), expression)
    fields = text.split()
    if len(fields) != 5:
        raise InvalidCron(
            f"Invalid crontab {expression!r}: it needs five fields "
            "(minute hour day-of-month month day-of-week, e.g. '0 3 * * *') or one of "
            + ", ".join(sorted(CRON_ALIASES))
            + "."
        )
    cron = Cron(*fields[:4], _sunday_as_zero(fields[4]))
    try:
        crontab(
            minute=cron.minute,
            hour=cron.hour,
            day_of_month=cron.day_of_month,
            month_of_year=cron.month_of_year,
            day_of_week=cron.day_of_week,
        )
    except Exception as exc:  # celery raises ValueError and friends
        raise InvalidCron(
            f"Invalid crontab {expression!r}: {str(exc).rstrip('.')}."
        ) from None
    return cron


def cron_of(crontab_schedule: Any) -> str:
    return str(
        Cron(
            crontab_schedule.minute,
            crontab_schedule.hour,
            crontab_schedule.day_of_month,
            crontab_schedule.month_of_year,
            crontab_schedule.day_of_week,
        )
    )


def _task_name_of(job_name: str) -> str:
    from .registry import TASK_PREFIX

    return TASK_PREFIX + job_name


def _periodic_name(label: str) -> str:
    import hashlib

    name = f"Job {label}"
    if len(name) <= 200:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:12]
    return name[:186] + "… " + digest


def _loads(text: str | None, default: Any) -> Any:
    try:
        return json.loads(text) if text else default
    except ValueError:
        return default


def find_schedule(name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Return the PeriodicTask of job ``name`` with exactly these parameters, or None."""
    from django_celery_beat.models import PeriodicTask

    for task in PeriodicTask.objects.filter(task=_task_name_of(name)).order_by("id"):
        if _loads(task.args, []) == args and _loads(task.kwargs, {}) == kwargs:
            return task
    return None


@dataclass
class Scheduled:
    label: str
    cron: str
    created: bool


@transaction.atomic
def schedule(
    expression: str,
    name: str,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    *,
    enabled: bool = True,
) -> Scheduled:
    """Schedule (or reschedule) job ``name`` with these parameters at ``expression``.

    A schedule is identified by the job name and its parameters; scheduling the same
    identity again changes its crontab instead of adding another.
    """
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    cron = parse_cron(expression)
    job = lookup(name)
    args, kwargs = list(args or []), dict(kwargs or {})
    check_params(job, args, kwargs)
    label = call_label(name, args, kwargs)
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute=cron.minute,
        hour=cron.hour,
        day_of_month=cron.day_of_month,
        month_of_year=cron.month_of_year,
        day_of_week=cron.day_of_week,
        timezone=settings.CELERY_TIMEZONE,
    )
    task = find_schedule(name, args, kwargs)
    created = task is None
    if created:
        task = PeriodicTask(
            name=_periodic_name(label),
            task=job.task_name,
            args=json.dumps(args),
            kwargs=json.dumps(kwargs, sort_keys=True),
        )
    old_crontab = task.crontab if not created else None
    task.crontab = crontab
    task.interval = task.solar = task.clocked = None
    task.description = job.description
    task.enabled = enabled
    task.save()
    if old_crontab is not None and old_crontab.pk != crontab.pk:
        _drop_unused_crontab(old_crontab)
    return Scheduled(label=label, cron=str(cron), created=created)


def unrunnable_schedules() -> list[tuple[str, str]]:
    """Return ``(periodic task name, why)`` for each schedule of a registered job whose
    arguments the job cannot take, so that it fails at every run (one made by hand in
    the admin, or before the job's parameters changed)."""
    from django_celery_beat.models import PeriodicTask

    jobs = {job.task_name: job for job in all_jobs()}
    found = []
    for task in PeriodicTask.objects.filter(task__in=jobs).order_by("pk"):
        args, kwargs = _loads(task.args, None), _loads(task.kwargs, None)
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            found.append((task.name, "its args or kwargs are not a JSON list / object"))
            continue
        problem = params_problem(jobs[task.task], args, kwargs)
        if problem:
            found.append((task.name, problem))
    return found


def _drop_unused_crontab(crontab: Any) -> None:
    if crontab is not None and not crontab.periodictask_set.exists():
        crontab.delete()


@transaction.atomic
def unschedule(
    name: str, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None
) -> Scheduled | None:
    """Remove the schedule of job ``name`` with these parameters; None if none."""
    args, kwargs = list(args or []), dict(kwargs or {})
    task = find_schedule(name, args, kwargs)
    if task is None:
        return None
    cron = cron_of(task.crontab) if task.crontab else str(task.schedule)
    crontab = task.crontab
    task.delete()
    _drop_unused_crontab(crontab)
    return Scheduled(label=call_label(name, args, kwargs), cron=cron, created=False)


def scheduled() -> list[dict[str, Any]]:
    """Return every periodic task Celery Beat knows, ours labelled as jobs."""
    from django_celery_beat.models import PeriodicTask

    from .registry import TASK_PREFIX

    rows = []
    tasks = PeriodicTask.objects.select_related("crontab").order_by("name")
    for task in tasks:
        args, kwargs = _loads(task.args, []), _loads(task.kwargs, {})
        job_name = task.task.removeprefix(TASK_PREFIX)
        rows.append(
            {
                "name": task.name,
                "job": job_name if task.task.startswith(TASK_PREFIX) else None,
                "task": task.task,
                "label": call_label(job_name, args, kwargs),
                "args": args,
                "kwargs": kwargs,
                "description": task.description,
                "cron": cron_of(task.crontab) if task.crontab else str(task.schedule),
                "timezone": str(task.crontab.timezone) if task.crontab else None,
                "enabled": task.enabled,
                "last_run_at": task.last_run_at.isoformat()
                if task.last_run_at
                else None,
                "total_run_count": task.total_run_count,
            }
        )
    return rows


@transaction.atomic
def install_default_schedules() -> list[str]:
    """Install the default schedules, idempotently; return what changed.

    ``purge`` and ``search-index`` are installed once, when the job exists and
    has no schedule yet; after that the schedule is the operator's: changed, it is
    kept, and unscheduled, it stays away (``DefaultSchedule`` remembers). A job
    that already had a schedule counts as installed. ``backup()`` follows
    ``BACKUP_SCHEDULE``: its crontab is set to it, or it is disabled by ``none``.
    """
    known = {j.name for j in all_jobs()}
    installed = set(DefaultSchedule.objects.values_list("name", flat=True))
    changes = []
    for name, expression in DEFAULT_SCHEDULES.items():
        if name not in known or name in installed:
            continue
        if not _has_any_schedule(name):
            schedule(expression, name)
            changes.append(f"scheduled {name}() at {expression}")
        DefaultSchedule.objects.create(name=name)
    backup = (getattr(settings, "BACKUP_SCHEDULE", "") or "none").strip()
    if "backup" in known:
        existing = find_schedule("backup", [], {})
        if backup.lower() == "none":
            if existing is not None and existing.enabled:
                existing.enabled = False
                existing.save(update_fields=["enabled"])
                changes.append("disabled backup() (BACKUP_SCHEDULE=none)")
        else:
            try:
                cron = str(parse_cron(backup))
            except JobError as exc:
                from django.core.exceptions import ImproperlyConfigured

                raise ImproperlyConfigured(f"BACKUP_SCHEDULE: {exc}") from None
            current = cron_of(existing.crontab) if existing and existing.crontab else ""
            if existing is None or current != cron or not existing.enabled:
                schedule(backup, "backup")
                changes.append(f"scheduled backup() at {cron}")
    return changes


def _has_any_schedule(name: str) -> bool:
    from django_celery_beat.models import PeriodicTask

    return PeriodicTask.objects.filter(task=_task_name_of(name)).exists()


# The beat lock
# ------------------------------------------------------------------------------

BEAT_LOCK = "beat"


def hold_beat_lock(holder: str, ttl: float) -> bool:
    """Claim or renew the beat lease for ``holder``; return whether it holds it.

    One conditional UPDATE: it succeeds only when the lock is free, expired or already
    ours, so two beats can never both hold it.
    """
    from django.db.models import Q

    from .models import BeatLock

    now = timezone.now()
    BeatLock.objects.get_or_create(name=BEAT_LOCK)
    lease = now + timedelta(seconds=ttl)
    mine = BeatLock.objects.filter(name=BEAT_LOCK, holder=holder).update(
        expires_at=lease
    )
    if mine:
        return True
    return bool(
        BeatLock.objects.filter(name=BEAT_LOCK)
        .filter(Q(holder="") | Q(expires_at__isnull=True) | Q(expires_at__lt=now))
        .update(holder=holder, expires_at=lease, acquired_at=now)
    )


def release_beat_lock(holder: str) -> bool:
    """Give the beat lease up if ``holder`` has it, so a standby beat takes over."""
    from .models import BeatLock

    return bool(
        BeatLock.objects.filter(name=BEAT_LOCK, holder=holder).update(
            holder="", expires_at=None
        )
    )


def beat_lock_holder() -> dict[str, Any] | None:
    """Return who holds the beat lease and until when, or None when nobody does."""
    from .models import BeatLock

    lock = BeatLock.objects.filter(name=BEAT_LOCK).first()
    if lock is None or not lock.holder or not lock.expires_at:
        return None
    if lock.expires_at < timezone.now():
        return None
    return {"holder": lock.holder, "expires_at": lock.expires_at}


# Workers and queues
# ------------------------------------------------------------------------------

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
    from config.celery_app import app

    return app


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
    import re

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


# Cache
# ------------------------------------------------------------------------------


def flush_cache(alias: str = "default") -> int | None:
    """Clear the cache; return how many keys went, or None when the backend can't say.

    On Redis only the cache's own keys go (``<KEY_PREFIX>:<version>:…``): the
    channel layer and a broker may share the database and must not be wiped.
    """
    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache

    cache = caches[alias]
    if not isinstance(cache, RedisCache):
        cache.clear()
        return None
    client = cache._cache.get_client(write=True)
    prefix = cache.key_prefix
    pattern = f"{prefix}:[0-9]*:*" if prefix else "[0-9]*:*"
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += client.delete(*batch)
            batch = []
    if batch:
        deleted += client.delete(*batch)
    return deleted


# Purge
# ------------------------------------------------------------------------------

# Measured at 1,000,000 rows: 20,000 is 1.19x the raw SQL against 1.58x at 5,000
# (fewer commits and statements), at the same flat memory; a batch of messages
# still commits in well under a second (docs/benchmarks.md).
PURGE_BATCH = 20_000


def purge_count(count: int, what: str) -> str:
    """``1 world deleted``, ``3 worlds deleted``: a PurgeReport count with its key."""
    # every key is "<regular plural> <verb>", such as "worlds deleted"
    return counted(count, what.replace("s ", " ", 1), what)


@dataclass
class PurgeReport:
    """What a purge removed (or, dry, would remove): (section, what) ↦ count."""

    dry_run: bool = False
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def add(self, section: str, what: str, count: int) -> None:
        bucket = self.counts.setdefault(section, {})
        bucket[what] = bucket.get(what, 0) + count

    def totals(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for section in self.counts.values():
            for what, count in section.items():
                totals[what] = totals.get(what, 0) + count
        return totals

    def summary(self) -> str:
        parts = [
            purge_count(count, what) for what, count in self.totals().items() if count
        ]
        return ", ".join(parts) or "nothing to purge"

    def __str__(self) -> str:
        return self.summary()

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "counts": self.counts, "skipped": self.skipped}


def _relax_commit(alias: str) -> None:
    """On PostgreSQL, let this transaction commit without waiting for the WAL flush.

    Hundreds of batch commits each waiting for an fsync cost more than the deletes.
    A crash can at worst lose the last batches' deletions: the rows are still
    soft-deleted and the next purge removes them, so nothing is ever half-applied.
    """
    from django.db import connections

    connection = connections[alias]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


class NeedsCollector(Exception):
    """Deleting this model needs Django's deletion collector; the message says why."""


@dataclass
class DeletionPlan:
    """How to delete rows of ``model`` with one statement per table: first what
    depends on them, as each foreign key's ``on_delete`` says, then the rows."""

    model: Any
    # Dependants deleted first: (their foreign key's name, their own plan).
    cascades: list[tuple[str, DeletionPlan]] = field(default_factory=list)
    # Dependants kept: (their model, the foreign key's name, the value it gets).
    updates: list[tuple[Any, str, Any]] = field(default_factory=list)
    # Whether the search index holds documents of these rows.
    indexed: bool = False
    # File fields whose files go once the rows are gone.
    files: list[Any] = field(default_factory=list)

    @property
    def simple(self) -> bool:
        """Whether a batch is one DELETE and nothing else."""
        return not (self.cascades or self.updates or self.indexed or self.files)

    def relations(self) -> list[tuple[str, str, str]]:
        """Return (dependant, foreign key, what happens) for every table this plan
        touches besides the model's own, recursively."""
        found = []
        for name, plan in self.cascades:
            found.append((plan.model._meta.label, name, "deleted"))
            found += plan.relations()
        for model, name, value in self.updates:
            found.append((model._meta.label, name, f"set to {value!r}"))
        return found


def _set_value(field_: Any) -> tuple[bool, Any]:
    """Return (True, value) when ``field_``'s on_delete sets it to a value
    (SET_NULL, SET_DEFAULT, SET(value)); (False, None) otherwise."""
    from django.db import models

    on_delete = field_.remote_field.on_delete
    if on_delete is models.SET_NULL:
        return True, None
    if on_delete is models.SET_DEFAULT:
        return True, field_.get_default()
    deconstruct = getattr(on_delete, "deconstruct", None)
    if deconstruct is not None:
        path, args, _ = deconstruct()
        if path == "django.db.models.SET":
            return True, args[0]  # a callable is called once per batch
    return False, None


def deletion_plan(model: Any, _path: tuple = ()) -> DeletionPlan:
    """Return how to delete rows of ``model`` set-based, honouring the ``on_delete``
    of every foreign key that points at it (and at what it cascades to).

    Raise ``NeedsCollector`` when only Django's collector deletes them right:
    PROTECT and RESTRICT (their checks), delete signal receivers other than the
    search index's (which gets one update per batch instead), generic relations,
    multi-table inheritance, cyclic cascades, custom on_delete functions.
    """
    from django.db import models
    from django.db.models.deletion import get_candidate_relations_to_delete
    from django.db.models.signals import post_delete, pre_delete

    from apps.search import services as search

    model = model._meta.concrete_model
    label = model._meta.label
    indexed = model in search.indexed_models()
    if model in _path:
        raise NeedsCollector(f"{label} cascades to itself")
    if model._meta.parents:
        raise NeedsCollector(f"{label} inherits another model's table")
    if any(hasattr(f, "bulk_related_objects") for f in model._meta.private_fields):
        raise NeedsCollector(f"{label} has generic relations")
    if pre_delete.has_listeners(model) or (
        post_delete.has_listeners(model) and not indexed
    ):
        raise NeedsCollector(f"{label} has delete signal receivers")
    plan = DeletionPlan(
        model=model,
        indexed=indexed,
        files=[
            f for f in model._meta.concrete_fields if isinstance(f, models.FileField)
        ],
    )
    for relation in get_candidate_relations_to_delete(model._meta):
        fk = relation.field
        on_delete = fk.remote_field.on_delete
        dependant = relation.related_model
        if on_delete is models.DO_NOTHING:
            continue
        if on_delete is models.CASCADE:
            plan.cascades.append((fk.name, deletion_plan(dependant, (*_path, model))))
            continue
        sets, value = _set_value(fk)
        if not sets:
            raise NeedsCollector(
                f"{dependant._meta.label}.{fk.name} is "
                f"{getattr(on_delete, '__name__', on_delete)}"
            )
        plan.updates.append((dependant, fk.name, value))
    return plan


def _execute_plan(
    plan: DeletionPlan, rows: Any, deleted: dict[str, int], ids: list | None = None
) -> None:
    """Delete ``rows`` (a queryset of ``plan.model``; ``ids`` when already read)
    and what depends on them, one statement per table, dependants first."""
    db = rows.db
    for name, sub in plan.cascades:
        dependants = sub.model._base_manager.using(db).filter(**{f"{name}__in": rows})
        _execute_plan(sub, dependants, deleted)
    for model, name, value in plan.updates:
        value = value() if callable(value) else value
        model._base_manager.using(db).filter(**{f"{name}__in": rows}).update(
            **{name: value}
        )
    if plan.indexed and ids is None:
        ids = list(rows.values_list("pk", flat=True))
    stored = []
    for file_field in plan.files:
        names = rows.exclude(**{file_field.name: ""}).exclude(
            **{f"{file_field.name}__isnull": True}
        )
        for name in names.values_list(file_field.name, flat=True):
            stored.append((file_field.storage, name))
    # No signals, no cascades: the plan has done what the collector would.
    count = rows._raw_delete(db)
    if count:
        label = plan.model._meta.label
        deleted[label] = deleted.get(label, 0) + count
    if plan.indexed and ids:
        from apps.search import services as search

        search.rows_deleted(plan.model, ids)
    if stored:
        # Files are not transactional: they go once the deletion is committed.
        transaction.on_commit(partial(_delete_files, stored), using=db)


def _delete_files(stored: list[tuple[Any, str]]) -> None:
    """Delete each file; one that cannot go is logged, and the others still go
    (the rows are gone already: check_integrity lists files without a row)."""
    for storage, name in stored:
        try:
            storage.delete(name)
        except Exception:
            logger.warning("purge: could not delete file %s", name, exc_info=True)


def _rows_of(model: Any, ids: list, db: str) -> Any:
    """Return the rows of ``model`` with these primary keys, as a queryset.

    On PostgreSQL the ids travel as one array, not one placeholder each: every
    statement of a batch repeats them, and thousands of placeholders cost more to
    build and parse than the statement itself.
    """
    from django.db import connections
    from django.db.models.expressions import RawSQL

    manager = model._base_manager.using(db)
    connection = connections[db]
    if connection.vendor != "postgresql":
        return manager.filter(pk__in=ids)
    array = f"%s::{model._meta.pk.rel_db_type(connection)}[]"
    return manager.filter(pk__in=RawSQL(f"SELECT unnest({array})", (ids,)))


def _delete_in_batches(
    queryset: Any, batch_size: int, on_batch: Any = None
) -> dict[str, int]:
    """Delete the rows of ``queryset`` ``batch_size`` at a time, each batch in its
    own transaction; return the rows deleted per model (cascades included).

    Batches are ranges of the primary key (keyset pagination), so the whole purge
    reads the table once instead of once per batch. A batch is set-based (see
    ``deletion_plan``): one statement per dependant table as its foreign key's
    ``on_delete`` says, then one for the rows, then one search index update. Rows
    without dependants go in one range ``DELETE`` and no id travels to Python;
    otherwise the batch's ids are read and locked first, so every statement of the
    batch acts on exactly the same rows. A model the plan cannot handle goes through
    Django's collector. An interrupted run leaves only whole batches done; a rerun
    starts over and finds only what is left.
    """
    model = queryset.model
    db = queryset.db
    try:
        plan: DeletionPlan | None = deletion_plan(model)
    except NeedsCollector as exc:
        logger.info("Purging %s through the collector: %s", model._meta.label, exc)
        plan = None
    deleted: dict[str, int] = {}
    last = None
    more = True
    while more:
        after = {} if last is None else {"pk__gt": last}
        page = queryset.filter(**after).order_by("pk")
        per_model: dict[str, int] = {}
        with transaction.atomic(using=db):
            _relax_commit(db)
            if plan is not None and not plan.simple:
                # The batch's ids, locked: every statement acts on exactly these
                # rows, whatever else commits meanwhile (say, a world restored).
                locked = page.select_for_update(of=("self",))
                ids = list(locked.values_list("pk", flat=True)[:batch_size])
                if ids:
                    _execute_plan(plan, _rows_of(model, ids, db), per_model, ids)
                    last = ids[-1]
                more = len(ids) == batch_size
            else:
                # The key of the batch_size-th row: the batch is every row up to it.
                upto = page.values_list("pk", flat=True)[
                    batch_size - 1 : batch_size
                ].first()
                bounds = after if upto is None else {**after, "pk__lte": upto}
                last, more = upto, upto is not None
                # The range on the outer DELETE too, so PostgreSQL walks the index
                # there instead of scanning the table to match the subquery's ids.
                batch = model._base_manager.using(db).filter(
                    **bounds, pk__in=queryset.filter(**bounds).values("pk")
                )
                if plan is not None:
                    _execute_plan(plan, batch, per_model)
                else:
                    per_model = {k: n for k, n in batch.delete()[1].items() if n}
        for label, n in per_model.items():
            deleted[label] = deleted.get(label, 0) + n
        if on_batch and per_model.get(model._meta.label):
            on_batch(model._meta.label, per_model[model._meta.label])
    return deleted


def purge(
    *,
    worlds: bool = True,
    rooms: bool = True,
    users: bool = True,
    dry_run: bool = False,
    batch_size: int = PURGE_BATCH,
    worlds_first: bool = False,
    on_section: Any = None,
    on_batch: Any = None,
) -> PurgeReport:
    """Remove what was soft-deleted: worlds (with their rooms, messages and
    attendees), rooms (with their messages) and users.

    Leaves go first (messages, then rooms, then attendees, then the world) in
    bounded batches, each its own transaction, so memory stays flat, no transaction
    holds millions of rows, and an interrupted purge leaves consistent data that a
    rerun finishes. A soft-deleted user whose chat messages others still see is
    anonymised by ``accounts.services.purge_user`` instead of deleted.

    ``worlds_first`` says soft-deleted worlds are (being) purged too, so a dry run
    does not count their rooms and attendees twice.
    """
    report = PurgeReport(dry_run=dry_run)
    skip_worlds = worlds or worlds_first
    if worlds:
        if on_section:
            on_section("worlds")
        _purge_worlds(report, dry_run, batch_size, on_batch)
    if rooms:
        if on_section:
            on_section("rooms")
        _purge_rooms(report, dry_run, batch_size, on_batch, skip_worlds)
    if users:
        if on_section:
            on_section("users")
        _purge_users(report, dry_run, batch_size, on_batch, skip_worlds)
    return report


def _purge_worlds(
    report: PurgeReport, dry_run: bool, batch: int, on_batch: Any
) -> None:
    from apps.accounts.models import User
    from apps.connections.models import ChatMessage
    from apps.worlds.models import Room, World

    doomed = World.objects.filter(deleted_at__isnull=False)
    messages = ChatMessage.objects.filter(room__world__deleted_at__isnull=False)
    rooms = Room.objects.filter(world__deleted_at__isnull=False)
    attendees = User.objects.filter(world__deleted_at__isnull=False)
    for what in ("worlds", "rooms", "messages", "attendees"):
        report.add("worlds", f"{what} deleted", 0)  # the order they are shown in
    if dry_run:
        report.add("worlds", "worlds deleted", doomed.count())
        report.add("worlds", "rooms deleted", rooms.count())
        report.add("worlds", "messages deleted", messages.count())
        report.add("worlds", "attendees deleted", attendees.count())
        return
    done = _delete_in_batches(messages, batch, on_batch)
    report.add("worlds", "messages deleted", done.get(ChatMessage._meta.label, 0))
    done = _delete_in_batches(rooms, batch, on_batch)
    report.add("worlds", "rooms deleted", done.get(Room._meta.label, 0))
    done = _delete_in_batches(attendees, batch, on_batch)
    report.add("worlds", "attendees deleted", done.get(User._meta.label, 0))
    done = _delete_in_batches(doomed, max(1, batch // 50), on_batch)
    report.add("worlds", "worlds deleted", done.get(World._meta.label, 0))


def _purge_rooms(
    report: PurgeReport, dry_run: bool, batch: int, on_batch: Any, skip_worlds: bool
) -> None:
    from apps.connections.models import ChatMessage
    from apps.worlds.models import Room

    rooms = Room.objects.filter(deleted_at__isnull=False)
    messages = ChatMessage.objects.filter(room__deleted_at__isnull=False)
    if skip_worlds:
        rooms = rooms.filter(world__deleted_at__isnull=True)
        messages = messages.filter(room__world__deleted_at__isnull=True)
    for what in ("rooms", "messages"):
        report.add("rooms", f"{what} deleted", 0)
    if dry_run:
        report.add("rooms", "rooms deleted", rooms.count())
        report.add("rooms", "messages deleted", messages.count())
        return
    done = _delete_in_batches(messages, batch, on_batch)
    report.add("rooms", "messages deleted", done.get(ChatMessage._meta.label, 0))
    done = _delete_in_batches(rooms, batch, on_batch)
    report.add("rooms", "rooms deleted", done.get(Room._meta.label, 0))


def _purge_users(
    report: PurgeReport, dry_run: bool, batch: int, on_batch: Any, skip_worlds: bool
) -> None:
    from django.db.models import Exists, OuterRef

    from apps.accounts import services as accounts
    from apps.accounts.models import User
    from apps.connections.models import ChatMessage

    # Already-anonymised accounts are tombstones that refuse their token: final.
    soft_deleted = User.objects.filter(deleted_at__isnull=False).exclude(
        email__endswith="@deleted"
    )
    if skip_worlds:
        soft_deleted = soft_deleted.exclude(world__deleted_at__isnull=False)
    has_content = Exists(ChatMessage.objects.filter(sender=OuterRef("pk")))
    # An attendee's row is what refuses its token (world + uid): deleting it would let
    # the same token create a fresh account. Attendees always become tombstones;
    # only operators without content others still see are deleted outright.
    deletable = soft_deleted.filter(~has_content, world__isnull=True)
    to_anonymise = soft_deleted.exclude(pk__in=deletable.values("pk"))
    if dry_run:
        report.add("users", "users deleted", deletable.count())
        report.add("users", "users anonymised", to_anonymise.count())
        return
    done = _delete_in_batches(deletable, batch, on_batch)
    report.add("users", "users deleted", done.get(User._meta.label, 0))
    anonymised = 0
    skipped: set[int] = set()
    while True:
        users = list(to_anonymise.exclude(pk__in=skipped).order_by("pk")[:batch])
        if not users:
            break
        for user in users:
            try:
                accounts.purge_user(user)
            except accounts.AccountError as exc:
                skipped.add(user.pk)
                report.skipped.append(f"user {user.pk}: {exc}")
            else:
                anonymised += 1
        if on_batch:
            on_batch(User._meta.label, len(users))
    report.add("users", "users anonymised", anonymised)
