"""Live connections: which build they run, and moving them onto another one.

Commands, the REST API and the consumer meet here. Messages reach consumers only
through the channel layer's public API: ``group_send`` to a label's group, which
holds one control channel per server process (``hub.py``), or, with an interval,
``send`` to each consumer's channel name from the registry. Either way a consumer in
any server process can be reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from asgiref.sync import async_to_sync
from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings

from apps.core.output import counted
from apps.core.secrets import mask_url
from apps.jobs import services as jobs

from .batching import PerLoop
from .models import ChatMessage
from .protocol import DROP, PING, RELOAD, REPLACED, Move
from .registry import get_registry, redis_errors

__all__ = ["DROP", "RELOAD", "REPLACED", "Move"]  # the message types, re-exported

# All consumers of one server process share one inbox in Redis, bounded by the
# layer's capacity: while it is full, --interval waits this long (seconds) for the
# server to read before counting a connection unreachable (its server is stuck or
# gone). Without --interval, group_send drops what does not fit, as it always does.
FULL_PATIENCE = 5.0
# How long a command waits for the server processes to answer that they are alive
# before counting their connections unreachable (seconds), and how often a long
# paced send asks again.
PING_PATIENCE = 2.0
PING_EVERY = 5.0
# A spread shorter than this is no spread: clients come back at once.
MIN_SPREAD_MS = 1000
# Nobody should be told to wait longer than an hour (the command, the API, the jobs).
MAX_SPREAD_MS = 3_600_000


class LayerUnavailable(Exception):
    """The channel layer cannot reach other processes."""


NEEDS_REDIS = (
    "The channel layer is in-memory, so this process cannot reach connections "
    "served by other processes; set REDIS_URL (e.g. redis://127.0.0.1:6379/0) "
    "for the server and for this command."
)


def current_label() -> str:
    """Return this process's deploy label, ``<commit>.<environment>``."""
    return f"{settings.STAGEHAND_COMMIT}.{settings.STAGEHAND_ENVIRONMENT}"


def label_group(label: str) -> str:
    """Return the channel-layer group of the server processes serving ``label``.

    Its members are the processes' hub channels, not the consumers (a valid group
    name).
    """
    return "connections." + hashlib.sha1(label.encode()).hexdigest()[:20]


# Thousands of sockets connect at once after a deploy, or close at once on a drop;
# channels-redis' pool holds 100 connections and fails beyond that instead of waiting,
# so a consumer's Redis bookkeeping takes turns, this many at a time per process.
REGISTER_CONCURRENCY = 50
_gates: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def gate() -> asyncio.Semaphore:
    """Return this event loop's turnstile for consumers' Redis bookkeeping."""
    loop = asyncio.get_running_loop()
    turnstile = _gates.get(loop)
    if turnstile is None:
        turnstile = _gates[loop] = asyncio.Semaphore(REGISTER_CONCURRENCY)
    return turnstile


# Presence: the consumers' only way to the registry, each call through the gate ----


async def _register_many(calls: list[tuple[str, str]]) -> list[None]:
    async with gate():
        await get_registry().beat_many(calls)
    return [None] * len(calls)


async def _claim_many(calls: list[tuple]) -> list[list[str]]:
    async with gate():
        return await get_registry().claim_many(calls)


# Handshakes come in crowds: those made meanwhile share one round trip (batching.py).
_registrations = PerLoop(_register_many)
_claims = PerLoop(_claim_many)


async def register(label: str, channel: str) -> None:
    """Make a new consumer countable under ``label`` (the registry)."""
    await _registrations(label, channel)


async def beat(label: str, channel: str) -> None:
    """Renew a consumer's heartbeat, so that it stays counted."""
    async with gate():
        await get_registry().beat(label, channel)


async def _unregister_many(calls: list[tuple[str, list]]) -> list[None]:
    by_label: dict[str, list] = {}
    for label, connections in calls:
        by_label.setdefault(label, []).extend(connections)
    async with gate():
        for label, connections in by_label.items():
            await get_registry().remove(label, connections)
    return [None] * len(calls)


_unregistrations = PerLoop(_unregister_many)


async def unregister(label: str, connections: list[tuple[str, Any]]) -> None:
    """Forget closed ``(channel, user or None)`` connections of ``label``: count, slots.

    Thousands of clients leave at once too (the page closed at the end of a
    talk): those meanwhile are forgotten with one script per label.
    """
    await _unregistrations(label, connections)


async def claim_slot(
    label: str, user: Any, channel: str, limit: int | None, since: float | None = None
) -> list[str]:
    """Take a connection_limit slot for ``user`` and renew the connection's
    heartbeat, in one round trip; return the channels it replaces.

    The caller tells those (``REPLACED``); see ``RedisRegistry.claim_slot``.
    """
    return await _claims(user, channel, limit, since, label)


# Chat ------------------------------------------------------------------------------


def post_chat_message(room_pk: int, room_id: str, user_id: int, text: str) -> dict:
    """Store a chat message; return it as ``chat.message`` frames carry it."""
    message = ChatMessage.objects.create(room_id=room_pk, sender_id=user_id, text=text)
    return {
        "id": message.pk,
        "room": room_id,
        "sender": user_id,
        "text": message.text,
        "created_at": message.created_at.isoformat(),
    }


def withdraw_chat_message(message_id: int) -> None:
    """Delete a message that could not be delivered."""
    ChatMessage.objects.filter(pk=message_id).delete()


@contextlib.contextmanager
def redis_answering() -> Iterator[None]:
    """Turn Redis being away into LayerUnavailable, which says what to do."""
    try:
        yield
    except redis_errors() as exc:
        raise LayerUnavailable(
            f"Redis at {mask_url(settings.REDIS_URL)} does not answer ({exc}), so "
            "connections cannot be counted or reached right now; nothing was sent. "
            "The servers keep their connections open and restore them when Redis is "
            "back: try again then."
        ) from exc


def require_shared_layer() -> None:
    """Raise LayerUnavailable unless connections of other processes are reachable."""
    layer = get_channel_layer()
    if (
        not settings.REDIS_URL
        or layer is None
        or isinstance(layer, InMemoryChannelLayer)
    ):
        raise LayerUnavailable(NEEDS_REDIS)


@dataclass(frozen=True)
class LabelCount:
    label: str
    connections: int


def list_labels() -> list[LabelCount]:
    """Return the live labels with their connection counts, biggest first."""
    require_shared_layer()
    with redis_answering():
        counts = get_registry().counts()
    return [
        LabelCount(label, n)
        for label, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]


@dataclass
class Selection:
    """The live connections of the labels that matched some glob."""

    patterns: list[str]
    channels: dict[str, list[str]] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return sorted(self.channels)

    @property
    def count(self) -> int:
        return sum(len(c) for c in self.channels.values())

    def describe_labels(self) -> str:
        return ", ".join(self.labels) if self.labels else "none"

    @property
    def unmatched(self) -> list[str]:
        """The globs that match no label with live connections (most likely typos)."""
        return [
            p
            for p in self.patterns
            if not any(fnmatchcase(label, p) for label in self.channels)
        ]


def select(patterns: Iterable[str] = ()) -> Selection:
    """Return the live connections whose label matches any fnmatch glob (default ``*``)."""
    require_shared_layer()
    patterns = list(patterns) or ["*"]
    registry = get_registry()
    selection = Selection(patterns=patterns)
    with redis_answering():
        for label in sorted(registry.counts()):
            if any(fnmatchcase(label, p) for p in patterns):
                channels = registry.members(label)
                if channels:
                    selection.channels[label] = channels
    return selection


@dataclass(frozen=True)
class SendResult:
    count: int
    labels: list[str]
    unreachable: int = 0
    move: Move = Move.DROP

    def summary(self) -> str:
        """``Dropped N connections (labels: …)`` or ``Reloaded …``."""
        labels = ", ".join(self.labels) if self.labels else "none"
        return (
            f"{self.move.verb} {counted(self.count, 'connection')} (labels: {labels})"
        )

    def as_dict(self, *, dry_run: bool = False) -> dict:
        return {
            "count": self.count,
            "labels": self.labels,
            "unreachable": self.unreachable,
            "dry_run": dry_run,
        }

    def unreachable_note(self) -> str:
        """What to say of connections no server read; empty when there were none."""
        if not self.unreachable:
            return ""
        return (
            f"{counted(self.unreachable, 'connection')} could not be reached: their "
            "server process did not answer (killed, stuck or gone); they were "
            "removed from the count."
        )


def default_spread_ms(count: int) -> int:
    """Return the window over which ``count`` dropped clients should come back: at
    ``CONNECTIONS_RECONNECT_RATE`` per second, none below one second's worth."""
    spread = round(count / settings.CONNECTIONS_RECONNECT_RATE * 1000)
    return spread if spread >= MIN_SPREAD_MS else 0


def move(
    move: Move,
    selection: Selection,
    *,
    interval_ms: int = 0,
    spread_ms: int | None = None,
    advance: Callable[[], None] | None = None,
) -> SendResult:
    """Drop or reload every selected connection, one per ``interval_ms`` if given.

    A drop closes them (1001); a reload tells each client to reload, then closes it
    after ``CONNECTIONS_RELOAD_GRACE``. Each client is told to come back after a
    random ``reconnect_after_ms`` within ``spread_ms`` (default: sized from the
    count, see default_spread_ms; none for a paced one). Connections whose server
    process does not answer (killed, stuck) are not sent to and count as
    unreachable. The command, the API, the admin and the jobs all come here.
    """
    require_shared_layer()
    if interval_ms < 0:
        raise ValueError("interval_ms must be zero or positive")
    if spread_ms is None:
        spread_ms = 0 if interval_ms else default_spread_ms(selection.count)
    if not 0 <= spread_ms <= MAX_SPREAD_MS:
        raise ValueError(f"spread_ms must be from 0 to {MAX_SPREAD_MS} (an hour)")
    with redis_answering():
        registry = get_registry()
        hubs = registry.processes()
        sent, unreachable, gone = async_to_sync(_send)(
            selection, move.message, interval_ms, spread_ms, hubs, advance
        )
        registry.forget_processes(gone)
        # The consumers remove themselves when they close; forgetting them now makes
        # an immediate `connections list` right, and covers those of a dead process.
        for label, channels in selection.channels.items():
            registry.forget(label, channels)
    return SendResult(sent, selection.labels, unreachable, move=move)


def move_later(
    move: Move,
    patterns: Iterable[str],
    *,
    interval_ms: int,
    spread_ms: int | None = None,
    trigger: str,
):
    """Queue a drop or reload as a job (``Move.job``); return its JobRun.

    A paced one takes count × interval, longer than a request or a page should
    wait; a worker runs ``connections-drop`` / ``connections-reload`` instead.
    ``spread_ms`` None leaves the job to size the spread from the count it finds.
    """
    kwargs: dict[str, int] = {"interval_ms": interval_ms}
    if spread_ms is not None:
        kwargs["spread_ms"] = spread_ms
    return jobs.send(move.job, list(patterns), kwargs, trigger=trigger)


def process_of(channel: str) -> str:
    """Return the part of a channel name that names its server process.

    The channel-layer specification's process-specific names: everything up to and
    including the ``!``; a consumer's channel and its process's hub share it.
    """
    head, bang, _ = channel.partition("!")
    return head + bang


async def process_alive(hub_channel: str) -> None:
    """Record that the hub's server process is alive (its hub calls this)."""
    async with gate():
        await get_registry().process_beat(hub_channel)


async def process_left(hub_channel: str) -> None:
    """Forget a hub whose server process stops."""
    async with gate():
        await get_registry().process_left(hub_channel)


async def _gone(layer, hubs: list[str], channels: Iterable[str]) -> list[str]:
    """Ping the hubs of the processes serving ``channels``; return those silent.

    A process without a hub in the registry (none seen) is not asked.
    """
    serving = {process_of(c) for c in channels}
    asked = {hub for hub in hubs if process_of(hub) in serving}
    if not asked:
        return []
    reply_to = await layer.new_channel()
    for hub in sorted(asked):
        try:
            await layer.send(hub, {"type": PING, "reply_to": reply_to})
        except ChannelFull:
            pass  # its inbox is full: it is not reading, so it will not answer
    silent = set(asked)
    try:
        async with asyncio.timeout(PING_PATIENCE):
            while silent:
                silent.discard((await layer.receive(reply_to)).get("hub"))
    except TimeoutError:
        pass
    return sorted(silent)


async def _send(
    selection: Selection,
    message_type: str,
    interval_ms: int,
    spread_ms: int,
    hubs: list[str],
    advance: Callable[[], None] | None,
) -> tuple[int, int, list[str]]:
    """Send to every selected connection; return (reached, unreachable, the hub
    channels of the processes found gone)."""
    layer = get_channel_layer()
    channels = [c for label in selection.labels for c in selection.channels[label]]
    gone = await _gone(layer, hubs, channels)
    dead = {process_of(hub) for hub in gone}
    unreachable = sum(process_of(c) in dead for c in channels)
    if not interval_ms:
        # One group_send per label, whose members are the server processes' hubs:
        # each process gets one message and closes its matching sockets locally.
        message = {"type": message_type}
        if spread_ms:
            message["spread_ms"] = spread_ms
        for label in selection.labels:
            await layer.group_send(label_group(label), {**message, "label": label})
            if advance:
                for _ in selection.channels[label]:
                    advance()
        return selection.count - unreachable, unreachable, gone
    reached = 0
    checked = time.monotonic()
    for channel in channels:
        if time.monotonic() - checked > PING_EVERY:
            # A long paced send: a process may have died meanwhile.
            found = await _gone(layer, [h for h in hubs if h not in gone], channels)
            gone += found
            dead.update(process_of(hub) for hub in found)
            checked = time.monotonic()
        if process_of(channel) not in dead:
            if reached:
                await asyncio.sleep(interval_ms / 1000)
            message = {"type": message_type}
            if spread_ms:
                message["reconnect_after_ms"] = random.randint(0, spread_ms)
            reached += await _send_one(layer, channel, message)
        if advance:
            advance()
    return reached, len(channels) - reached, gone


async def _send_one(layer, channel: str, message: dict) -> bool:
    delay, waited = 0.01, 0.0
    while True:
        try:
            await layer.send(channel, message)
            return True
        except ChannelFull:
            if waited >= FULL_PATIENCE:
                return False
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 0.05)
