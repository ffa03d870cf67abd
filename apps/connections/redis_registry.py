"""The registry in Redis, shared by every process (``REDIS_URL``); see
:mod:`apps.connections.registry`, which chooses it, and the keys it uses.

Apart so that redis-py is imported only where Redis is configured.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections import defaultdict
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from .registry import (
    GENERATION_KEY,
    LABELS_KEY,
    PREFIX,
    PROCESSES_KEY,
    USER_SET_TTL,
    label_key,
    user_key,
    window,
)


def _close_with_loop(loop: asyncio.AbstractEventLoop, client: Any) -> None:
    """Close ``client``'s connections when ``loop`` closes (as channels-redis does).

    Short-lived loops (async_to_sync, tests) would otherwise leave sockets open.
    """
    original = loop.close

    def close(*args: Any, **kwargs: Any) -> None:
        loop.close = original
        if not loop.is_running() and not loop.is_closed():
            loop.run_until_complete(client.aclose(close_connection_pool=True))
        original(*args, **kwargs)

    loop.close = close


# KEYS: the label's set, then one attendee's set per slot. ARGV: every channel
# (removed from the label's set), then each slot's channel. One command with one
# reply: a pipeline of 10,000 ZREMs spent most of a drop parsing their replies.
_REMOVE = """
local slots = #KEYS - 1
local channels = #ARGV - slots
for i = 1, channels do
    redis.call('ZREM', KEYS[1], ARGV[i])
end
for i = 1, slots do
    redis.call('ZREM', KEYS[i + 1], ARGV[channels + i])
end
"""


# KEYS: the attendee's set, then (for the heartbeat) the label's set and the set of
# labels. ARGV: the channel,
# its slot's score (when it connected), the attendee set's TTL, the limit (0: none),
# now, the label key's TTL, "1" if a new claim (which never replaces itself), and
# the label. The slot claim and the connection's heartbeat in one round trip; it
# returns the replaced channels, oldest first, already out of the attendee's set.
_CLAIM = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
if #KEYS == 3 then
    redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
    redis.call('EXPIRE', KEYS[2], ARGV[6])
    redis.call('ZADD', KEYS[3], ARGV[5], ARGV[8])
end
local limit = tonumber(ARGV[4])
if limit == 0 then return {} end
local excess = redis.call('ZCARD', KEYS[1]) - limit
if excess <= 0 then return {} end
local replaced = {}
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, excess - 1)) do
    if not (ARGV[7] == '1' and member == ARGV[1]) then
        table.insert(replaced, member)
        redis.call('ZREM', KEYS[1], member)
    end
end
return replaced
"""


# After a Redis restart every idle pooled connection is stale, and the first command
# on each fails ("Connection closed by server"): a new consumer's registration then
# crashed its handshake (HTTP 500). Every command here is idempotent (ZADD, EXPIRE,
# ZREM, ZRANGE), so it is retried once, at once, on a fresh connection.
def _retry() -> Retry:
    return Retry(NoBackoff(), 1)


def _async_retry() -> AsyncRetry:
    return AsyncRetry(NoBackoff(), 1)


class RedisRegistry:
    """The shared registry: async methods for consumers, sync ones for commands."""

    def __init__(self, url: str):
        self.url = url
        # redis.asyncio clients belong to the event loop they first ran on.
        self._async_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._sync_client = None
        self._claim = None  # the claim script, registered on first use

    def _aclient(self):
        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None:
            # Thousands of sockets connect or close at once after a drop; a blocking
            # pool makes them queue for a connection instead of failing.
            pool = redis.asyncio.BlockingConnectionPool.from_url(
                self.url, max_connections=50, timeout=30, retry=_async_retry()
            )
            client = redis.asyncio.Redis(connection_pool=pool)
            self._async_clients[loop] = client
            _close_with_loop(loop, client)
        return client

    def _client(self):
        if self._sync_client is None:
            self._sync_client = redis.Redis.from_url(
                self.url, decode_responses=True, retry=_retry()
            )
        return self._sync_client

    # Consumers -------------------------------------------------------------------

    async def beat(self, label: str, channel: str) -> None:
        """Record that ``channel`` (serving ``label``) is alive now."""
        now = time.time()
        # Once every member is older than the window the key is worthless: let it go.
        ttl = math.ceil(window()) + 1
        async with self._aclient().pipeline(transaction=False) as pipe:
            pipe.zadd(label_key(label), {channel: now})
            pipe.expire(label_key(label), ttl)
            pipe.zadd(LABELS_KEY, {label: now})
            await pipe.execute()

    async def beat_many(self, beats: list[tuple[str, str]]) -> None:
        """Record that each ``(label, channel)`` is alive now, in one round trip."""
        now = time.time()
        ttl = math.ceil(window()) + 1
        by_label: dict[str, dict[str, float]] = defaultdict(dict)
        for label, channel in beats:
            by_label[label][channel] = now
        async with self._aclient().pipeline(transaction=False) as pipe:
            for label, channels in by_label.items():
                pipe.zadd(label_key(label), channels)
                pipe.expire(label_key(label), ttl)
            pipe.zadd(LABELS_KEY, dict.fromkeys(by_label, now))
            await pipe.execute()

    async def remove(self, label: str, connections: list[tuple[str, Any]]) -> None:
        """Forget ``(channel, user or None)`` connections of ``label``, in one round trip.

        A closing consumer passes itself; a server process dropping a label passes
        every connection it closes, so that 10,000 closes are one script, not
        20,000 calls.
        """
        if not connections:
            return
        slots = [
            (user_key(user), channel)
            for channel, user in connections
            if user is not None
        ]
        await self._aclient().eval(
            _REMOVE,
            1 + len(slots),
            label_key(label),
            *(key for key, _ in slots),
            *(channel for channel, _ in connections),
            *(channel for _, channel in slots),
        )

    async def claim_slot(
        self,
        user: Any,
        channel: str,
        limit: int | None,
        since: float | None = None,
        *,
        label: str | None = None,
    ) -> list[str]:
        """Add ``channel`` to the attendee's connections; return those it replaces.

        Oldest first (by ``since``, when it connected, default now); with no limit
        nothing is replaced. A channel of a crashed process may still be listed: it
        is the oldest, so it goes first, and sending to it is harmless. A new
        connection never replaces itself; one claiming its slot again after a Redis
        restart (``since`` given) may be among the oldest, and is then replaced too.
        With ``label``, the connection's heartbeat is renewed in the same round trip.
        """
        (replaced,) = await self.claim_many([(user, channel, limit, since, label)])
        return replaced

    async def claim_many(self, claims: list[tuple]) -> list[list[str]]:
        """Claim each ``(user, channel, limit, since, label)`` as claim_slot does, in
        one round trip; return what each replaces."""
        now = time.time()
        client = self._aclient()
        if self._claim is None:
            self._claim = client.register_script(_CLAIM)
        async with client.pipeline(transaction=False) as pipe:
            for user, channel, limit, since, label in claims:
                keys = [user_key(user)]
                if label:
                    keys += [label_key(label), LABELS_KEY]
                await self._claim(
                    keys=keys,
                    args=[
                        channel,
                        now if since is None else since,
                        USER_SET_TTL,
                        limit or 0,
                        now,
                        math.ceil(window()) + 1,
                        "1" if since is None else "0",
                        label or "",
                    ],
                    client=pipe,
                )
            replies = await pipe.execute()
        return [[m.decode() for m in replaced] for replaced in replies]

    async def process_beat(self, hub_channel: str) -> None:
        """Record that the server process whose hub is ``hub_channel`` is alive."""
        await self._aclient().zadd(PROCESSES_KEY, {hub_channel: time.time()})

    async def process_left(self, hub_channel: str) -> None:
        await self._aclient().zrem(PROCESSES_KEY, hub_channel)

    def processes(self) -> list[str]:
        """Return the hub channels of the server processes seen within the window."""
        client = self._client()
        cutoff = time.time() - window()
        client.zremrangebyscore(PROCESSES_KEY, "-inf", f"({cutoff}")
        return client.zrange(PROCESSES_KEY, 0, -1)

    def forget_processes(self, hub_channels: list[str]) -> None:
        if hub_channels:
            self._client().zrem(PROCESSES_KEY, *hub_channels)

    async def generation(self) -> bytes | None:
        """Return the number that moves whenever a world, room or terms change."""
        return await self._aclient().get(GENERATION_KEY)

    def bump_generation(self) -> None:
        self._client().incr(GENERATION_KEY)

    # Commands --------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Return live connections per label, trimming stale members on the way."""
        client = self._client()
        cutoff = time.time() - window()
        client.zremrangebyscore(LABELS_KEY, "-inf", f"({cutoff}")
        labels = client.zrange(LABELS_KEY, 0, -1)
        if not labels:
            return {}
        with client.pipeline(transaction=False) as pipe:
            for label in labels:
                pipe.zremrangebyscore(label_key(label), "-inf", f"({cutoff}")
                pipe.zcard(label_key(label))
            replies = pipe.execute()
        return {
            label: count
            for label, count in zip(labels, replies[1::2], strict=True)
            if count
        }

    def members(self, label: str) -> list[str]:
        """Return the live channels of ``label``, longest-idle first."""
        cutoff = time.time() - window()
        return self._client().zrangebyscore(label_key(label), cutoff, "+inf")

    def forget(self, label: str, channels: list[str]) -> None:
        if channels:
            self._client().zrem(label_key(label), *channels)

    def clear(self) -> None:
        """Remove every key of the registry (tests and benchmarks)."""
        client = self._client()
        keys = list(client.scan_iter(f"{PREFIX}:*", count=1000))
        if keys:
            client.delete(*keys)
