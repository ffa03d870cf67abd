"""The job registry: named, schedulable administrative tasks.

An app declares its jobs in its own ``tasks.py``, next to its services, with the
schedule each gets by default (installed once, then the operator's: docs/jobs.md)::

    from apps.jobs.registry import FromSetting, job

    @job("backup", "Back the database up.", default_schedule=FromSetting("BACKUP_SCHEDULE"))
    def backup_job(database: str = "default") -> str:
        return services.backup(database=database).name

The jobs app imports no other app: it finds the jobs by importing every installed
app's ``tasks`` module (``JobsConfig.ready``).

Each job is also a Celery task named ``stagehand.<name>``, so it can run in the shell
(``jobs run``), on a worker (``jobs run -d``) or from Celery Beat (``jobs schedule``).
Job modules are imported by Celery's autodiscovery of each app's ``tasks.py`` and by
``JobsConfig.ready``.

Every run is recorded as a ``JobRun`` (see ``apps.jobs.services.execute``): the Celery
task reads who asked for it from the message headers (``stagehand_trigger`` set by
``jobs run -d`` and the API, ``periodic_task_name`` set by Celery Beat).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import shared_task

from . import services
from .catalog import REGISTRY, TASK_PREFIX, FromSetting, Job, all_jobs, get_job

__all__ = [
    "REGISTRY",
    "TASK_PREFIX",
    "FromSetting",
    "Job",
    "all_jobs",
    "get_job",
    "job",
]


def job(
    name: str,
    description: str,
    *,
    default_schedule: str | FromSetting | None = None,
    check: Callable[..., Any] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``func`` as the job ``name`` and as the Celery task ``stagehand.<name>``,
    scheduled by default at ``default_schedule`` (a crontab or ``FromSetting``).

    ``check``, called with the parameters of a schedule before it is saved, raises
    ValueError when their values are wrong (``jobs schedule`` refuses them then,
    instead of every run failing)."""

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        if name in REGISTRY and REGISTRY[name].func is not func:
            raise ValueError(f"job {name!r} is registered twice")

        @shared_task(name=TASK_PREFIX + name, bind=True)
        def task(self: Any, *args: Any, **kwargs: Any) -> Any:
            return services.execute(
                name,
                list(args),
                kwargs,
                trigger=services.trigger_of(self.request),
                task_id=self.request.id or "",
            )

        REGISTRY[name] = Job(
            name=name,
            description=description,
            func=func,
            task=task,
            default_schedule=default_schedule,
            check=check,
        )
        return func

    return decorator
