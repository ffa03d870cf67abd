"""Set-based deletion: rows deleted in bounded batches, one statement per table, as
each foreign key's ``on_delete`` says; and the report every purge gives.

This is the one reading of ``on_delete`` in Stagehand (``on_delete_of``): the purge of
worlds and rooms (worlds), of users (accounts) and ``purge_user`` all go through it.
An app that keeps something derived from rows (search's index) subscribes to
``rows_deleted`` instead of being called by the app that deletes them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from django.db import connections, models, transaction
from django.db.models.deletion import get_candidate_relations_to_delete
from django.db.models.expressions import RawSQL
from django.db.models.signals import post_delete, pre_delete
from django.dispatch import Signal

from .output import counted

logger = logging.getLogger(__name__)

# Sent once per batch, inside the batch's transaction, with ``sender`` the model and
# ``ids`` the primary keys of its rows just deleted in bulk (no ``post_delete`` per
# row). A model with receivers of this signal may keep ``post_delete`` receivers too:
# they are taken to do the same work row by row.
rows_deleted = Signal()

OnBatch = Callable[[str, int], None]


class NeedsCollector(Exception):
    """Deleting this model needs Django's deletion collector; the message says why."""


# What happens to rows pointing at a deleted row
# ------------------------------------------------------------------------------

CASCADE = "cascade"  # they are deleted too
SET = "set"  # they stay, their foreign key gets a value
NOTHING = "nothing"  # DO_NOTHING: the database's own constraint decides
OTHER = "other"  # PROTECT, RESTRICT or a custom function: only the collector knows


@dataclass(frozen=True)
class OnDelete:
    kind: str
    # The value a SET foreign key gets (a callable is called once per batch).
    value: Any = None
    # The on_delete's name, for messages: CASCADE, SET_NULL, PROTECT, …
    name: str = ""


def on_delete_of(foreign_key: Any) -> OnDelete:
    """Return what deleting the row ``foreign_key`` points at does to its own row."""
    on_delete = foreign_key.remote_field.on_delete
    name = getattr(on_delete, "__name__", str(on_delete))
    if on_delete is models.CASCADE:
        return OnDelete(CASCADE, name=name)
    if on_delete is models.DO_NOTHING:
        return OnDelete(NOTHING, name=name)
    if on_delete is models.SET_NULL:
        return OnDelete(SET, None, name)
    if on_delete is models.SET_DEFAULT:
        return OnDelete(SET, foreign_key.get_default(), name)
    deconstruct = getattr(on_delete, "deconstruct", None)
    if deconstruct is not None:
        path, args, _ = deconstruct()
        if path == "django.db.models.SET":
            return OnDelete(SET, args[0], "SET")
    return OnDelete(OTHER, name=name)


def set_value(foreign_key: Any) -> tuple[bool, Any]:
    """Return (True, value) when ``foreign_key``'s on_delete sets it to a value
    (SET_NULL, SET_DEFAULT, SET(value)); (False, None) otherwise."""
    action = on_delete_of(foreign_key)
    return (True, action.value) if action.kind == SET else (False, None)


def dependants(model: Any) -> list[tuple[Any, OnDelete]]:
    """Return (reverse relation, what deleting a row of ``model`` does) for every
    foreign key that points at ``model``."""
    return [
        (relation, on_delete_of(relation.field))
        for relation in get_candidate_relations_to_delete(model._meta)
    ]


def related_rows(rows: Any, path: str) -> Any:
    """Return the rows reached from ``rows`` through reverse relations, as a queryset.

    ``path`` names the relations by their accessors (``"rooms__messages"``: the
    messages of the rooms of these worlds), so the caller needs no import of the
    model at the end of it.
    """
    model, lookups = rows.model, []
    for name in path.split("__"):
        relation = model._meta.get_field(name)
        lookups.insert(0, relation.field.name)
        model = relation.related_model
    return model._base_manager.using(rows.db).filter(
        **{"__".join(lookups) + "__in": rows.values("pk")}
    )


# Plans
# ------------------------------------------------------------------------------


@dataclass
class DeletionPlan:
    """How to delete rows of ``model`` with one statement per table: first what
    depends on them, as each foreign key's ``on_delete`` says, then the rows."""

    model: Any
    # Dependants deleted first: (their foreign key's name, their own plan).
    cascades: list[tuple[str, DeletionPlan]] = field(default_factory=list)
    # Dependants kept: (their model, the foreign key's name, the value it gets).
    updates: list[tuple[Any, str, Any]] = field(default_factory=list)
    # Whether receivers of ``rows_deleted`` want the ids of these rows.
    announced: bool = False
    # File fields whose files go once the rows are gone.
    files: list[Any] = field(default_factory=list)

    @property
    def simple(self) -> bool:
        """Whether a batch is one DELETE and nothing else."""
        return not (self.cascades or self.updates or self.announced or self.files)

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


def deletion_plan(model: Any, _path: tuple = ()) -> DeletionPlan:
    """Return how to delete rows of ``model`` set-based, honouring the ``on_delete``
    of every foreign key that points at it (and at what it cascades to).

    Raise ``NeedsCollector`` when only Django's collector deletes them right:
    PROTECT and RESTRICT (their checks), ``pre_delete`` receivers, ``post_delete``
    receivers of a model nobody hears ``rows_deleted`` for, generic relations,
    multi-table inheritance, cyclic cascades, custom on_delete functions.
    """
    model = model._meta.concrete_model
    label = model._meta.label
    announced = rows_deleted.has_listeners(model)
    if model in _path:
        raise NeedsCollector(f"{label} cascades to itself")
    if model._meta.parents:
        raise NeedsCollector(f"{label} inherits another model's table")
    if any(hasattr(f, "bulk_related_objects") for f in model._meta.private_fields):
        raise NeedsCollector(f"{label} has generic relations")
    if pre_delete.has_listeners(model) or (
        post_delete.has_listeners(model) and not announced
    ):
        raise NeedsCollector(f"{label} has delete signal receivers")
    plan = DeletionPlan(
        model=model,
        announced=announced,
        files=[
            f for f in model._meta.concrete_fields if isinstance(f, models.FileField)
        ],
    )
    for relation, action in dependants(model):
        fk, dependant = relation.field, relation.related_model
        if action.kind == NOTHING:
            continue
        if action.kind == CASCADE:
            plan.cascades.append((fk.name, deletion_plan(dependant, (*_path, model))))
        elif action.kind == SET:
            plan.updates.append((dependant, fk.name, action.value))
        else:
            raise NeedsCollector(f"{dependant._meta.label}.{fk.name} is {action.name}")
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
    if plan.announced and ids is None:
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
    if plan.announced and ids:
        rows_deleted.send(sender=plan.model, ids=ids)
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
    manager = model._base_manager.using(db)
    connection = connections[db]
    if connection.vendor != "postgresql":
        return manager.filter(pk__in=ids)
    array = f"%s::{model._meta.pk.rel_db_type(connection)}[]"
    return manager.filter(pk__in=RawSQL(f"SELECT unnest({array})", (ids,)))


def _relax_commit(alias: str) -> None:
    """On PostgreSQL, let this transaction commit without waiting for the WAL flush.

    Hundreds of batch commits each waiting for an fsync cost more than the deletes.
    A crash can at worst lose the last batches' deletions: the rows are still
    soft-deleted and the next purge removes them, so nothing is ever half-applied.
    """
    connection = connections[alias]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def delete_in_batches(
    queryset: Any, batch_size: int, on_batch: OnBatch | None = None
) -> dict[str, int]:
    """Delete the rows of ``queryset`` ``batch_size`` at a time, each batch in its
    own transaction; return the rows deleted per model label (cascades included).

    Batches are ranges of the primary key (keyset pagination), so the whole deletion
    reads the table once instead of once per batch. A batch is set-based (see
    ``deletion_plan``): one statement per dependant table as its foreign key's
    ``on_delete`` says, then one for the rows, then ``rows_deleted``. Rows without
    dependants go in one range ``DELETE`` and no id travels to Python; otherwise the
    batch's ids are read and locked first, so every statement of the batch acts on
    exactly the same rows. A model the plan cannot handle goes through Django's
    collector. An interrupted run leaves only whole batches done; a rerun starts
    over and finds only what is left. ``on_batch(label, rows)`` follows progress.
    """
    model = queryset.model
    db = queryset.db
    try:
        plan: DeletionPlan | None = deletion_plan(model)
    except NeedsCollector as exc:
        logger.info("Deleting %s through the collector: %s", model._meta.label, exc)
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


# Reports
# ------------------------------------------------------------------------------


def purge_count(count: int, what: str) -> str:
    """``1 world deleted``, ``3 worlds deleted``: a report's count with its key."""
    # every key is "<regular plural> <verb>", such as "worlds deleted"
    return counted(count, what.replace("s ", " ", 1), what)


@dataclass
class PurgeReport:
    """What a purge removed (or, dry, would remove): lines of (what, count, action)
    in sections, in the order they are shown.

    The ``purge`` command has one section per kind of data (worlds, rooms, users);
    ``purge_user`` one, about one user (``label``).
    """

    dry_run: bool = False
    # section ↦ what ↦ [count, action]
    lines: dict[str, dict[str, list]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    # What the report is about ("3 cleo <cleo@example.org>"), when one thing.
    label: str = ""
    # what ↦ the same in the singular, for a count of 1 ("1 account anonymised"),
    # where dropping the first "s" of the plural would not do.
    singular: dict[str, str] = field(default_factory=dict)
    # The summary of a report with nothing in it.
    empty: str = "nothing to purge"

    def add(self, section: str, what: str, count: int, action: str = "deleted") -> None:
        line = self.lines.setdefault(section, {}).setdefault(what, [0, action])
        line[0] += count

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        return {
            section: {what: line[0] for what, line in lines.items()}
            for section, lines in self.lines.items()
        }

    @property
    def items(self) -> list[tuple[str, int, str]]:
        """Every line as (what, count, action), sections one after the other."""
        return [
            (what, count, action)
            for lines in self.lines.values()
            for what, (count, action) in lines.items()
        ]

    def totals(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for what, count, _ in self.items:
            totals[what] = totals.get(what, 0) + count
        return totals

    def count_text(self, count: int, what: str) -> str:
        if what in self.singular:
            return counted(count, self.singular[what], what)
        return purge_count(count, what)

    def summary(self) -> str:
        parts = [
            self.count_text(count, what)
            for what, count in self.totals().items()
            if count
        ]
        return ", ".join(parts) or self.empty

    def merge(self, other: PurgeReport) -> None:
        for section, lines in other.lines.items():
            for what, (count, action) in lines.items():
                self.add(section, what, count, action)
        self.skipped += other.skipped

    def __str__(self) -> str:
        return self.summary()

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "counts": self.counts, "skipped": self.skipped}

    def items_as_dicts(self) -> list[dict[str, Any]]:
        return [
            {"what": what, "count": count, "action": action}
            for what, count, action in self.items
        ]
