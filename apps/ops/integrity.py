"""The database integrity check behind ``check_integrity``: report, never fix.

Each check looks for one kind of broken data that foreign keys alone do not prevent:
rows left behind by a partial restore or a manual ``DELETE`` with constraints off, files
and rows that disagree after storage and database were restored from different
moments (TopoBank's known inconsistencies), and configuration that no longer parses.

Kept apart from ``services.py`` (component health) because it is a separate concern
that reads every app's tables; it only reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.core.files.storage import default_storage
from django.db import models
from django_celery_beat.models import PeriodicTask

from apps.accounts.models import User
from apps.connections.models import ChatMessage
from apps.jobs import services as job_services
from apps.jobs.registry import all_jobs
from apps.worlds.models import Room, World
from apps.worlds.services import jwt_secrets_problems

EXAMPLES = 5


@dataclass
class Finding:
    kind: str
    description: str
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "description": self.description,
            "count": self.count,
            "examples": self.examples,
        }


def _finding_from_rows(
    kind: str, description: str, rows: models.QuerySet, describe: Callable[[Any], str]
) -> Finding:
    return Finding(
        kind,
        description,
        count=rows.count(),
        examples=[describe(row) for row in rows[:EXAMPLES]],
    )


def rooms_of_purged_worlds() -> Finding:
    rows = (
        Room.objects.exclude(world_id__in=World.objects.values("pk"))
        .order_by("pk")
        .values("pk", "world_id", "name")
    )
    return _finding_from_rows(
        "rooms_of_purged_worlds",
        "rooms whose world no longer exists",
        rows,
        lambda r: f"room {r['pk']} {r['name']!r} of world {r['world_id']!r}",
    )


def attendees_of_missing_worlds() -> Finding:
    rows = (
        User.objects.filter(world_id__isnull=False)
        .exclude(world_id__in=World.objects.values("pk"))
        .order_by("pk")
        .values("pk", "world_id", "token_id")
    )
    return _finding_from_rows(
        "attendees_of_missing_worlds",
        "attendees whose world no longer exists",
        rows,
        lambda r: f"user {r['pk']} (uid {r['token_id']!r}) of world {r['world_id']!r}",
    )


def messages_in_missing_rooms() -> Finding:
    rows = (
        ChatMessage.objects.exclude(room_id__in=Room.objects.values("pk"))
        .order_by("pk")
        .values("pk", "room_id")
    )
    return _finding_from_rows(
        "messages_in_missing_rooms",
        "chat messages whose room no longer exists",
        rows,
        lambda r: f"message {r['pk']} in room {r['room_id']}",
    )


def malformed_jwt_secrets() -> Finding:
    finding = Finding(
        "malformed_jwt_secrets",
        "worlds whose JWT_secrets cannot verify tokens",
        count=0,
    )
    for world_id, config in World.objects.order_by("pk").values_list("pk", "config"):
        problems = jwt_secrets_problems(config)
        if not problems:
            continue
        finding.count += 1
        if len(finding.examples) < EXAMPLES:
            path, message = problems[0]
            more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
            finding.examples.append(f"world {world_id!r}: {path} {message}{more}")
    return finding


def _known_task_names() -> set[str]:
    return {job.task_name for job in all_jobs()}


def unknown_periodic_tasks() -> Finding:
    known = _known_task_names()
    rows = (
        PeriodicTask.objects.exclude(task__in=known)
        # Celery's own housekeeping task is installed by django-celery-beat itself.
        .exclude(task__startswith="celery.")
        .order_by("pk")
        .values("pk", "name", "task")
    )
    return _finding_from_rows(
        "unknown_periodic_tasks",
        "periodic tasks that point at no registered job",
        rows,
        lambda r: f"periodic task {r['name']!r} runs unknown {r['task']!r}",
    )


def unrunnable_periodic_tasks() -> Finding:
    problems = job_services.unrunnable_schedules()
    return Finding(
        "unrunnable_periodic_tasks",
        "periodic tasks whose arguments their job cannot take (they fail at every run)",
        count=len(problems),
        examples=[
            f"periodic task {name!r}: {why}" for name, why in problems[:EXAMPLES]
        ],
    )


# Files
# ------------------------------------------------------------------------------


def _file_fields() -> Iterator[tuple[type[models.Model], models.FileField]]:
    for model in apps.get_models():
        for model_field in model._meta.concrete_fields:
            if isinstance(model_field, models.FileField):
                yield model, model_field


def _stored_names(storage, directory: str = "") -> Iterator[str]:
    """Yield every file name in ``storage`` below ``directory``, recursively."""
    try:
        subdirectories, files = storage.listdir(directory)
    except FileNotFoundError:
        return
    for name in files:
        yield f"{directory}/{name}" if directory else name
    for sub in subdirectories:
        yield from _stored_names(storage, f"{directory}/{sub}" if directory else sub)


def file_findings() -> list[Finding]:
    """Return the files nobody references and the rows whose file is missing.

    Only fields stored in the default storage are compared with its listing; a field
    on another storage is checked row by row.
    """
    unreferenced = Finding("unreferenced_files", "stored files that no row references")
    missing = Finding("missing_files", "rows that reference a missing file")
    stored = set(_stored_names(default_storage))
    referenced: set[str] = set()
    for model, file_field in _file_fields():
        storage = file_field.storage
        on_default = storage is default_storage
        rows = (
            model._default_manager.exclude(**{file_field.name: ""})
            .exclude(**{f"{file_field.name}__isnull": True})
            .order_by("pk")
            .values_list("pk", file_field.attname)
        )
        label = model._meta.label_lower
        for pk, name in rows.iterator():
            if on_default:
                referenced.add(name)
                exists = name in stored
            else:
                exists = storage.exists(name)
            if not exists:
                missing.count += 1
                if len(missing.examples) < EXAMPLES:
                    missing.examples.append(f"{label} {pk}.{file_field.name} -> {name}")
    orphans = sorted(stored - referenced)
    unreferenced.count = len(orphans)
    unreferenced.examples = orphans[:EXAMPLES]
    return [unreferenced, missing]


def check_integrity() -> list[Finding]:
    """Run every check; return one Finding per kind, in a stable order."""
    findings = [
        rooms_of_purged_worlds(),
        attendees_of_missing_worlds(),
        messages_in_missing_rooms(),
        *file_findings(),
        malformed_jwt_secrets(),
        unknown_periodic_tasks(),
        unrunnable_periodic_tasks(),
    ]
    return findings


# Files uploaded after a backup was taken are in the storage but not in the backup:
# expected in a restored copy, so not a problem of the backup.
NOT_PROBLEMS_IN_A_BACKUP = {"unreferenced_files"}


def rehearsal_problems(sender: object, **kwargs: Any) -> list[str]:
    """``rehearsal_checks`` receiver: the findings of ``check_integrity`` on a
    backup restored into a scratch database (the default connection there)."""
    return [
        f"{f.kind}: {f.count} {f.description}"
        for f in check_integrity()
        if f.count and f.kind not in NOT_PROBLEMS_IN_A_BACKUP
    ]
