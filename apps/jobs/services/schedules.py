"""Schedules: crontabs of django-celery-beat ``PeriodicTask`` rows, identified by
job name and parameters, and the default schedules each app declares."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery.schedules import crontab, crontab_parser
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from ..catalog import TASK_PREFIX, FromSetting, Job, all_jobs
from ..models import DefaultSchedule
from .errors import InvalidCron, JobError
from .params import call_label, check_params, lookup, params_problem

CRON_ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}


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
    return TASK_PREFIX + job_name


def _periodic_name(label: str) -> str:
    name = f"Job {label}"
    if len(name) <= 200:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:12]
    return name[:186] + "… " + digest


def loads(text: str | None, default: Any) -> Any:
    try:
        return json.loads(text) if text else default
    except ValueError:
        return default


def find_schedule(name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Return the PeriodicTask of job ``name`` with exactly these parameters, or None."""
    for task in PeriodicTask.objects.filter(task=_task_name_of(name)).order_by("id"):
        if loads(task.args, []) == args and loads(task.kwargs, {}) == kwargs:
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
    jobs = {job.task_name: job for job in all_jobs()}
    found = []
    for task in PeriodicTask.objects.filter(task__in=jobs).order_by("pk"):
        args, kwargs = loads(task.args, None), loads(task.kwargs, None)
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
    name: str,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    *,
    dry_run: bool = False,
) -> Scheduled | None:
    """Remove the schedule of job ``name`` with these parameters; None if none.
    With ``dry_run``, return the schedule that would go and keep it."""
    args, kwargs = list(args or []), dict(kwargs or {})
    task = find_schedule(name, args, kwargs)
    if task is None:
        return None
    cron = cron_of(task.crontab) if task.crontab else str(task.schedule)
    if dry_run:
        return Scheduled(label=call_label(name, args, kwargs), cron=cron, created=False)
    crontab = task.crontab
    task.delete()
    _drop_unused_crontab(crontab)
    return Scheduled(label=call_label(name, args, kwargs), cron=cron, created=False)


def scheduled() -> list[dict[str, Any]]:
    """Return every periodic task Celery Beat knows, ours labelled as jobs."""
    rows = []
    tasks = PeriodicTask.objects.select_related("crontab").order_by("name")
    for task in tasks:
        args, kwargs = loads(task.args, []), loads(task.kwargs, {})
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


def next_run_at(task: Any, now: datetime | None = None) -> datetime | None:
    """Return when Beat next sends the PeriodicTask ``task``: ``now`` when it is
    overdue, None when it is disabled.

    Beat counts from the task's last run, or from its own start when the task never
    ran; ``now`` stands in for the latter.
    """
    if not task.enabled:
        return None
    now = now or timezone.now()
    remaining = task.schedule.remaining_estimate(task.last_run_at or now)
    return now + max(remaining, timedelta(0))


def default_expression(job: Job) -> str | None:
    """Return the crontab ``job`` is scheduled at by default, None for no schedule.

    A ``FromSetting`` default is read now; a setting that is no crontab, alias or
    ``none`` is ImproperlyConfigured, so that a typo is loud at the next ``migrate``.
    """
    default = job.default_schedule
    if not isinstance(default, FromSetting):
        return default
    text = str(getattr(settings, default.setting, "") or "none").strip()
    if text.lower() == "none":
        return None
    try:
        return str(parse_cron(text))
    except JobError as exc:
        raise ImproperlyConfigured(f"{default.setting}: {exc}") from None


@transaction.atomic
def install_default_schedules() -> list[str]:
    """Install the default schedules, idempotently; return what changed.

    Each job's ``default_schedule`` is installed once, when the job exists and has
    no schedule yet; after that the schedule is the operator's: changed, it is
    kept, and unscheduled, it stays away (``DefaultSchedule`` remembers). A job
    that already had a schedule counts as installed. A default read from a setting
    (``BACKUP_SCHEDULE``) that says ``none`` installs nothing yet; changed after
    the schedule was installed, it changes nothing but ``jobs scheduled`` says so
    (``schedule_notes``). The rule is docs/jobs.md's "Default schedules".
    """
    installed = set(DefaultSchedule.objects.values_list("name", flat=True))
    changes = []
    for job in all_jobs():
        if job.default_schedule is None:
            continue
        expression = default_expression(job)
        if job.name in installed:
            continue
        has_schedule = _has_any_schedule(job.name)
        if expression is None and not has_schedule:
            continue  # nothing to seed yet
        if not has_schedule:
            schedule(expression, job.name)
            changes.append(f"scheduled {job.name}() at {expression}")
        DefaultSchedule.objects.create(name=job.name, expression=expression or "none")
    return changes


def schedule_notes() -> list[str]:
    """Return a note for each default read from a setting that was changed after its
    schedule was installed and now differs from it: the schedule won, the note says
    how to apply the setting."""
    notes = []
    seeded = dict(DefaultSchedule.objects.values_list("name", "expression"))
    for job in all_jobs():
        default = job.default_schedule
        if not isinstance(default, FromSetting) or job.name not in seeded:
            continue
        wanted = default_expression(job) or "none"
        if wanted == seeded[job.name]:
            continue  # the setting is what was installed: the schedule is yours
        task = find_schedule(job.name, [], {})
        current = (
            cron_of(task.crontab)
            if task is not None and task.enabled and task.crontab
            else "none"
        )
        if current == wanted:
            continue
        if wanted == "none":
            fix = f"jobs unschedule {job.name}"
        else:
            fix = f'jobs schedule "{wanted}" {job.name}'
        shown = "not scheduled" if current == "none" else f"scheduled at {current}"
        notes.append(
            f"{default.setting} is {wanted} but {job.name}() is {shown}; "
            f"run `{fix}` to apply it."
        )
    return notes


def _has_any_schedule(name: str) -> bool:
    return PeriodicTask.objects.filter(task=_task_name_of(name)).exists()
