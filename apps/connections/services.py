"""Live connections: which build they run, and moving them onto another one.

Commands, the REST API and the consumer meet here. Messages reach consumers only
through the channel layer's public API (``send``), addressed to the channel names
the registry holds, so a consumer in any server process can be reached.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings

from .registry import get_registry

# Message types a consumer handles (``connections.drop`` -> ``connections_drop``).
DROP = "connections.drop"
RELOAD = "connections.reload"
REPLACED = "connections.replaced"

# Without --interval, sends go out this many at a time.
SEND_BATCH = 500


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

    def as_dict(self) -> dict:
        return {"label": self.label, "connections": self.connections}


def list_labels() -> list[LabelCount]:
    """Return the live labels with their connection counts, biggest first."""
    require_shared_layer()
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


def select(patterns: Iterable[str] = ()) -> Selection:
    """Return the live connections whose label matches any fnmatch glob (default ``*``)."""
    require_shared_layer()
    patterns = list(patterns) or ["*"]
    registry = get_registry()
    selection = Selection(patterns=patterns)
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


def drop(
    selection: Selection,
    *,
    interval_ms: int = 0,
    advance: Callable[[], None] | None = None,
) -> SendResult:
    """Close every selected connection, one per ``interval_ms`` if given."""
    return _send_all(selection, DROP, interval_ms, advance)


def force_reload(
    selection: Selection,
    *,
    interval_ms: int = 0,
    advance: Callable[[], None] | None = None,
) -> SendResult:
    """Tell every selected client to reload, then close it after a short grace."""
    return _send_all(selection, RELOAD, interval_ms, advance)


def _send_all(
    selection: Selection,
    message_type: str,
    interval_ms: int,
    advance: Callable[[], None] | None,
) -> SendResult:
    require_shared_layer()
    if interval_ms < 0:
        raise ValueError("interval_ms must be zero or positive")
    sent = async_to_sync(_send)(selection, message_type, interval_ms, advance)
    registry = get_registry()
    # The consumers remove themselves when they close; forgetting them now makes an
    # immediate `connections list` right, and covers those of a dead process.
    for label, channels in selection.channels.items():
        registry.forget(label, channels)
    return SendResult(count=sent, labels=selection.labels)


async def _send(
    selection: Selection,
    message_type: str,
    interval_ms: int,
    advance: Callable[[], None] | None,
) -> int:
    layer = get_channel_layer()
    message = {"type": message_type}
    channels = [c for label in selection.labels for c in selection.channels[label]]
    if interval_ms:
        for index, channel in enumerate(channels):
            if index:
                await asyncio.sleep(interval_ms / 1000)
            await layer.send(channel, dict(message))
            if advance:
                advance()
        return len(channels)
    for start in range(0, len(channels), SEND_BATCH):
        batch = channels[start : start + SEND_BATCH]
        await asyncio.gather(*(layer.send(c, dict(message)) for c in batch))
        if advance:
            for _ in batch:
                advance()
    return len(channels)
