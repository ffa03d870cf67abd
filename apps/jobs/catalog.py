"""The catalogue of jobs: what ``registry.job`` registered, for the services to
look jobs up in (kept apart from the decorator, which calls the services)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TASK_PREFIX = "stagehand."


@dataclass(frozen=True)
class FromSetting:
    """A default schedule read from a setting when it is installed (a crontab, an
    alias such as ``@daily``, or ``none`` for no schedule)."""

    setting: str


@dataclass(frozen=True)
class Job:
    name: str
    description: str
    func: Callable[..., Any]
    task: Any
    # The schedule installed once by ``migrate``: a crontab, FromSetting, or None.
    default_schedule: str | FromSetting | None = None
    # Called with the job's parameters before they are scheduled; raises ValueError
    # saying what is wrong with their values (their types are checked anyway).
    check: Callable[..., Any] | None = None

    @property
    def task_name(self) -> str:
        return TASK_PREFIX + self.name


REGISTRY: dict[str, Job] = {}


def get_job(name: str) -> Job:
    """Return the registered job ``name``; KeyError when there is none."""
    return REGISTRY[name]


def all_jobs() -> list[Job]:
    """Return every registered job, sorted by name."""
    return [REGISTRY[name] for name in sorted(REGISTRY)]
