"""Where live connections are counted, per deploy label.

Each consumer's channel name sits in a sorted set per label, scored by its last
heartbeat. A label's count is the number of members seen within the heartbeat
window, and stale members are trimmed whenever someone reads. A server process that
dies therefore loses its connections from the count after one window, instead of
leaving a running +1/-1 sum wrong forever.

The same module keeps each attendee's connections (scored by when they connected) so
that ``connection_limit`` can replace the oldest one across processes.

With ``REDIS_URL`` the registry lives in Redis and every process shares it; without
it, a process-local registry keeps the consumer working on embedded defaults (and the
``connections`` commands refuse, since they cannot reach other processes anyway).
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from typing import Any

from django.conf import settings

PREFIX = "stagehand:connections"
LABELS_KEY = f"{PREFIX}:labels"
# Moves whenever a world, room or terms change (snapshots.py).
GENERATION_KEY = f"{PREFIX}:generation"
# Each server process's hub channel, scored by its last heartbeat.
PROCESSES_KEY = f"{PREFIX}:processes"
# Attendees' connection sets outlive a crashed process at most this long.
USER_SET_TTL = 24 * 60 * 60


def label_key(label: str) -> str:
    return f"{PREFIX}:label:{label}"


def user_key(user_id: Any) -> str:
    return f"{PREFIX}:user:{user_id}"


def window() -> float:
    return float(settings.CONNECTIONS_HEARTBEAT_WINDOW)


def _replaced(oldest: list[str], channel: str, since: float | None) -> list[str]:
    # A claim stamped now is the newest unless clocks disagree: never itself then.
    return oldest if since is not None else [m for m in oldest if m != channel]


class MemoryRegistry:
    """The registry of one process, for the embedded defaults."""

    def __init__(self) -> None:
        self.labels: dict[str, dict[str, float]] = defaultdict(dict)
        self.users: dict[Any, dict[str, float]] = defaultdict(dict)
        self._generation = 0
        self.hubs: dict[str, float] = {}

    async def beat(self, label: str, channel: str) -> None:
        self.labels[label][channel] = time.time()

    async def beat_many(self, beats: list[tuple[str, str]]) -> None:
        for label, channel in beats:
            await self.beat(label, channel)

    async def claim_many(self, claims: list[tuple]) -> list[list[str]]:
        return [
            await self.claim_slot(user, channel, limit, since, label=label)
            for user, channel, limit, since, label in claims
        ]

    async def remove(self, label: str, connections: list[tuple[str, Any]]) -> None:
        for channel, user in connections:
            self.labels[label].pop(channel, None)
            if user in self.users:
                self.users[user].pop(channel, None)
                if not self.users[user]:
                    del self.users[user]

    async def claim_slot(
        self,
        user: Any,
        channel: str,
        limit: int | None,
        since: float | None = None,
        *,
        label: str | None = None,
    ) -> list[str]:
        if label:
            await self.beat(label, channel)
        slots = self.users[user]
        slots[channel] = time.time() if since is None else since
        if not limit or len(slots) <= limit:
            return []
        oldest = sorted(slots, key=slots.__getitem__)[: len(slots) - limit]
        replaced = _replaced(oldest, channel, since)
        for c in replaced:
            slots.pop(c, None)
        return replaced

    def counts(self) -> dict[str, int]:
        cutoff = time.time() - window()
        result = {}
        for label, members in list(self.labels.items()):
            for channel, seen in list(members.items()):
                if seen < cutoff:
                    del members[channel]
            if members:
                result[label] = len(members)
            else:
                del self.labels[label]
        return result

    def members(self, label: str) -> list[str]:
        cutoff = time.time() - window()
        members = self.labels.get(label, {})
        return sorted((c for c, s in members.items() if s >= cutoff), key=members.get)

    def forget(self, label: str, channels: list[str]) -> None:
        for channel in channels:
            self.labels.get(label, {}).pop(channel, None)

    async def process_beat(self, hub_channel: str) -> None:
        self.hubs[hub_channel] = time.time()

    async def process_left(self, hub_channel: str) -> None:
        self.hubs.pop(hub_channel, None)

    def processes(self) -> list[str]:
        cutoff = time.time() - window()
        return [h for h, seen in self.hubs.items() if seen >= cutoff]

    def forget_processes(self, hub_channels: list[str]) -> None:
        for hub in hub_channels:
            self.hubs.pop(hub, None)

    async def generation(self) -> int:
        return self._generation

    def bump_generation(self) -> None:
        self._generation += 1

    def clear(self) -> None:
        self.labels.clear()
        self.users.clear()
        self.hubs.clear()


_registries: dict[str, Any] = {}


def get_registry() -> Any:
    """Return the registry for the configured ``REDIS_URL`` (one per URL): a
    :class:`~apps.connections.redis_registry.RedisRegistry`, or a MemoryRegistry."""
    url = settings.REDIS_URL
    registry = _registries.get(url)
    if registry is None:
        if url:
            # redis-py only with REDIS_URL: ~40 ms of every command's start-up
            # otherwise (redis, redis.asyncio, cryptography; bench/startup.py).
            from .redis_registry import RedisRegistry  # noqa: PLC0415

            registry = RedisRegistry(url)
        else:
            registry = MemoryRegistry()
        _registries[url] = registry
    return registry


def redis_errors() -> tuple[type[BaseException], ...]:
    """What redis-py raises when Redis is away (``layer.REDIS_ERRORS``), for an
    ``except``: evaluated only when something was raised. Before anything imported
    redis-py no Redis call can have failed, so then it is nothing."""
    module = sys.modules.get("redis.exceptions")
    return (module.ConnectionError, module.TimeoutError) if module else ()
