"""Keep documents in step with writes: after each commit, update what changed.

Saves (including soft deletes, which are saves) and hard deletes of worlds, rooms and
attendees queue a document update for after the transaction commits: a Celery task
when a broker is configured, inline otherwise. Queryset ``update()`` and
``bulk_create`` send no signals; ``search index -f`` catches those up. Bulk deletes
that send no ``post_delete`` (the purge's batches) send ``apps.core.deletion``'s
``rows_deleted``, which search subscribes to here: the apps that delete never
import search.
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_init, post_save

from apps.accounts.models import User
from apps.core.deletion import rows_deleted
from apps.worlds.models import Room, World

from . import services, tasks
from .sources import ATTENDEES, ROOMS, SOURCES, WORLDS, Source

# Saves touching only these fields cannot change a user's document.
USER_FIELDS_NOT_INDEXED = {"last_login", "password", "updated_at", "traits"}


# Ids saved in this thread whose documents still need an update, per model. Every
# save registers an on_commit callback, and the first one to run after a commit
# takes all pending ids of its model: a transaction that writes 1,000 rooms sends
# one batched update, not 1,000. Ids left by a rolled-back transaction are simply
# brought up to date with the next commit (an update only syncs to what is stored).
_pending = threading.local()
BATCH = 500


def _pending_ids() -> dict[str, set]:
    if not hasattr(_pending, "ids"):
        _pending.ids = {}
    return _pending.ids


def schedule_update(model: str, ids: list[Any]) -> None:
    """Update these documents once the current transaction commits."""
    _pending_ids().setdefault(model, set()).update(ids)

    # A function, not a partial: Django names a failing robust callback by its
    # __qualname__ when it logs the failure, which a partial does not have.
    def flush() -> None:
        _flush(model)

    # robust: a failing index update is logged; it never fails the write it follows.
    transaction.on_commit(flush, robust=True)


def _flush(model: str) -> None:
    ids = sorted(_pending_ids().pop(model, ()))
    for start in range(0, len(ids), BATCH):
        batch = ids[start : start + BATCH]
        if settings.STAGEHAND_HAS_BROKER:
            tasks.update_documents.delay(model, batch)
        else:
            services.update_documents(model, batch)


def _on_change(source: Source):
    def receiver(sender, instance, **kwargs: Any) -> None:
        if kwargs.get("raw"):  # loaddata
            return
        schedule_update(source.key, [instance.pk])

    return receiver


def _on_user_change(sender, instance, **kwargs: Any) -> None:
    # Operators have no world and are not searchable.
    if kwargs.get("raw") or instance.world_id is None:
        return
    update_fields = kwargs.get("update_fields")
    if update_fields and set(update_fields) <= USER_FIELDS_NOT_INDEXED:
        return
    schedule_update(ATTENDEES.key, [instance.pk])


def _on_world_change(sender, instance, **kwargs: Any) -> None:
    if kwargs.get("raw"):
        return
    schedule_update(WORLDS.key, [instance.pk])
    # Which profile fields are searchable lives in the world's config.
    if kwargs.get("signal") is post_save and _searchable_fields_changed(instance):
        instance._search_fields_loaded = searchable_fields(instance.config)
        if not kwargs.get("created"):
            ids = list(
                instance.attendees.filter(deleted_at__isnull=True).values_list(
                    "pk", flat=True
                )
            )
            if ids:
                schedule_update(ATTENDEES.key, ids)


def _searchable_fields_changed(world) -> bool:
    before = getattr(world, "_search_fields_loaded", None)
    return before is None or before != searchable_fields(world.config)


def searchable_fields(config: Any) -> list[str]:
    fields = config.get("profile_fields") if isinstance(config, dict) else None
    return [
        str(f.get("id"))
        for f in fields or []
        if isinstance(f, dict) and f.get("searchable") is True
    ]


def _remember_fields(sender, instance, **kwargs: Any) -> None:
    instance._search_fields_loaded = searchable_fields(instance.config)


def _on_rows_deleted(sender, ids: list, **kwargs: Any) -> None:
    """Drop the documents of rows deleted in bulk without ``post_delete`` (the
    purge's set-based batches), once the transaction commits: the same coalesced
    update that a ``post_delete`` per row would have queued."""
    concrete = sender._meta.concrete_model
    for source in SOURCES.values():
        if ids and source.model._meta.concrete_model is concrete:
            schedule_update(source.key, list(ids))


def connect() -> None:
    post_init.connect(_remember_fields, sender=World, dispatch_uid="search-world-init")
    for name, signal in (("save", post_save), ("delete", post_delete)):
        signal.connect(
            _on_world_change, sender=World, dispatch_uid=f"search-world-{name}"
        )
        signal.connect(
            _on_change(ROOMS),
            sender=Room,
            dispatch_uid=f"search-room-{name}",
            weak=False,
        )
        signal.connect(_on_user_change, sender=User, dispatch_uid=f"search-user-{name}")
    for model in (World, Room, User):
        rows_deleted.connect(
            _on_rows_deleted, sender=model, dispatch_uid=f"search-{model.__name__}"
        )
