"""What a server process keeps of each world, so that a handshake needs no query.

Thousands of attendees connect in the first minute of an event and again after
every redeploy; each used to read its world, the world's rooms and the current
terms from the database, on the process's one database thread. A process now reads
them once and keeps a :class:`Snapshot` per world (its secrets, roles, trait grants
and rooms, and the welcome payload per set of traits), and one of the current
required terms.

They are forgotten when anything they hold changes: saving (or deleting) a world, a
room or terms, which ``import_config``, ``create_world``, ``import_terms`` and the
admin all do, bumps a generation number in the registry (Redis) once the transaction
commits. Each process reads that number at most once per
``CONNECTIONS_SNAPSHOT_CHECK`` seconds (1 by default, one Redis call for all the
handshakes of that second) and drops its snapshots when it moved; the process that
made the change drops its own at once. So a new JWT secret or new terms reach every
process within that second. Should Redis be away when the change is made, each
snapshot is still read again after ``CONNECTIONS_SNAPSHOT_MAX_AGE`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from apps.accounts.models import Terms
from apps.accounts.services import current_terms, terms_as_dict
from apps.worlds.models import Room, World
from apps.worlds.services import get_world, permissions_for
from apps.worlds.signals import world_changed

from .protocol import CHAT_MODULE
from .registry import get_registry, redis_errors

logger = logging.getLogger(__name__)

# Welcome payloads kept per world: one per distinct set of traits seen.
MAX_WELCOMES = 512


@dataclass(frozen=True)
class RoomView:
    pk: int
    id: str
    name: str
    description: str
    modules: list
    trait_grants: dict
    has_chat: bool


@dataclass
class Snapshot:
    """A world as the consumer needs it: read once per process, never changed."""

    world: Any  # the World instance (id, title, domain, config, roles, trait_grants)
    rooms: tuple[RoomView, ...]  # the live rooms, by sorting priority, then name
    read_at: float = field(default_factory=time.monotonic)
    _welcomes: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.world.id

    def permissions(self, traits: Iterable[str], room: RoomView | None = None) -> set:
        return permissions_for(self.world, traits, room)

    def visible_rooms(self, traits: Iterable[str]) -> list[RoomView]:
        traits = list(traits)
        return [r for r in self.rooms if "room:view" in self.permissions(traits, r)]

    def room(self, traits: list[str], room_id: Any) -> RoomView | None:
        """Return the live room ``room_id`` if ``traits`` may view it."""
        for room in self.visible_rooms(traits) if isinstance(room_id, str) else ():
            if room.id == room_id:
                return room
        return None

    def welcome(self, user_id: int, traits: list[str]) -> tuple[dict, int | None]:
        """Return the ``authenticated`` payload and the connection_limit for these
        traits (None: unlimited)."""
        key = tuple(traits)
        known = self._welcomes.get(key)
        if known is None:
            permissions = self.permissions(traits)
            rooms = [
                {
                    "id": room.id,
                    "name": room.name,
                    "description": room.description,
                    "modules": [
                        {"type": m.get("type"), "config": m.get("config", {})}
                        for m in room.modules
                        if isinstance(m, dict)
                    ],
                }
                for room in self.visible_rooms(traits)
            ]
            limit = (self.world.config or {}).get("connection_limit") or None
            if "world:connections.unlimited" in permissions:
                limit = None
            known = (sorted(permissions), rooms, limit)
            if len(self._welcomes) >= MAX_WELCOMES:
                self._welcomes.clear()
            self._welcomes[key] = known
        permissions, rooms, limit = known
        welcome = {
            "world": {"id": self.world.id, "title": self.world.title},
            "user": {"id": user_id, "traits": traits},
            "permissions": permissions,
            "rooms": rooms,
        }
        return welcome, limit


@dataclass(frozen=True)
class TermsSnapshot:
    """The current required terms (as frames carry them), until ``until`` (epoch s),
    when a version imported for later becomes current."""

    required: tuple[dict, ...]
    until: float | None
    read_at: float = field(default_factory=time.monotonic)

    @property
    def ids(self) -> list[int]:
        return [t["id"] for t in self.required]


def read_world(world_id: str) -> Snapshot:
    """Return a new snapshot of the live world ``world_id`` (WorldNotFound if none)."""
    world = get_world(world_id)
    rooms = world.rooms.filter(deleted_at__isnull=True).order_by(
        "sorting_priority", "name", "pk"
    )
    return Snapshot(
        world,
        tuple(
            RoomView(
                room.pk,
                room.import_id,
                room.name,
                room.description,
                room.modules,
                room.trait_grants,
                any(
                    isinstance(m, dict) and m.get("type") == CHAT_MODULE
                    for m in room.modules
                ),
            )
            for room in rooms
        ),
    )


def read_terms() -> TermsSnapshot:
    """Return a new snapshot of the current required terms."""
    now = timezone.now()
    upcoming = (
        Terms.objects.filter(active_from__gt=now)
        .order_by("active_from")
        .values_list("active_from", flat=True)
        .first()
    )
    return TermsSnapshot(
        tuple(terms_as_dict(t) for t in current_terms(now) if t.required),
        upcoming.timestamp() if upcoming else None,
    )


class Snapshots:
    """One event loop's snapshots (a server process has one loop)."""

    def __init__(self) -> None:
        self.worlds: dict[str, Snapshot] = {}
        self.terms: TermsSnapshot | None = None
        self.generation: Any = None
        self.checked = -float("inf")  # time.monotonic() of the last check
        self._checking: asyncio.Future | None = None
        self._reading: dict[str, asyncio.Future] = {}

    def forget(self) -> None:
        self.worlds.clear()
        self.terms = None

    async def _fresh(self) -> None:
        """Drop the snapshots if the generation moved (read at most once a second)."""
        if time.monotonic() - self.checked < settings.CONNECTIONS_SNAPSHOT_CHECK:
            return
        if self._checking is None:
            self._checking = asyncio.ensure_future(self._check())
        await asyncio.shield(self._checking)

    async def _check(self) -> None:
        try:
            generation = await get_registry().generation()
        except redis_errors() as exc:
            # Redis away: the snapshots stay, up to their maximum age.
            logger.debug("connections: could not read the snapshot generation: %s", exc)
            generation = self.generation
        finally:
            self._checking = None
        self.checked = time.monotonic()
        if generation != self.generation:
            self.forget()
            self.generation = generation

    def _young(self, read_at: float) -> bool:
        return time.monotonic() - read_at < settings.CONNECTIONS_SNAPSHOT_MAX_AGE

    async def world(self, world_id: str) -> Snapshot:
        """Return the snapshot of world ``world_id``; WorldNotFound if it has none."""
        await self._fresh()
        snapshot = self.worlds.get(world_id)
        if snapshot is not None and self._young(snapshot.read_at):
            return snapshot
        # One read for all the handshakes waiting for the same world.
        reading = self._reading.get(world_id)
        if reading is None:
            reading = asyncio.ensure_future(load_world(world_id))
            self._reading[world_id] = reading
            reading.add_done_callback(lambda _: self._reading.pop(world_id, None))
        snapshot = await asyncio.shield(reading)
        self.worlds[world_id] = snapshot
        return snapshot

    async def current_terms(self) -> TermsSnapshot:
        """Return the snapshot of the current required terms."""
        await self._fresh()
        terms = self.terms
        if (
            terms is None
            or not self._young(terms.read_at)
            or (terms.until is not None and time.time() >= terms.until)
        ):
            terms = self.terms = await load_terms()
        return terms


# Looked up through the module, so that a test can make them fail.
load_world = database_sync_to_async(read_world)
load_terms = database_sync_to_async(read_terms)

_snapshots: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_snapshots_lock = threading.Lock()  # changes are committed in other threads


def snapshots() -> Snapshots:
    """Return the running event loop's snapshots."""
    loop = asyncio.get_running_loop()
    found = _snapshots.get(loop)
    if found is None:
        with _snapshots_lock:
            found = _snapshots[loop] = Snapshots()
    return found


def changed(**kwargs: Any) -> None:
    """A world, room or terms changed: forget the snapshots once it is committed.

    Connected to post_save and post_delete (apps.py); services that change rows with
    ``update()`` call it themselves.
    """
    transaction.on_commit(_bump)


def _bump() -> None:
    with _snapshots_lock:
        every = list(_snapshots.values())
    for found in every:
        found.forget()
    try:
        get_registry().bump_generation()
    except redis_errors() as exc:
        logger.warning(
            "connections: could not tell other server processes that a world "
            "changed (%s); they read it again within %s s",
            exc,
            settings.CONNECTIONS_SNAPSHOT_MAX_AGE,
        )


def connect() -> None:
    """Forget snapshots whenever a world, room or terms change (from ``ready``)."""
    for model in (World, Room, Terms):
        for signal in (post_save, post_delete):
            signal.connect(
                changed, sender=model, dispatch_uid=f"snapshots-{model.__name__}"
            )
    world_changed.connect(changed, dispatch_uid="snapshots-world-changed")
