"""The Redis channel layer, for consumers that outlive a Redis outage.

channels-redis' ``receive`` raises as soon as Redis goes away, and channels ends a
consumer whose inbox read raises: a Redis restart closed every socket of every
server process (1006) within a second. Channels gives a consumer no hook into its
own inbox read, so this subclass changes what ``receive`` does while Redis is away
(it is the one module that knows channels-redis beyond the channel-layer API):

- The first failure marks the layer down on that event loop: it closes the idle
  connections of its pools, which would otherwise fail once, stale, after Redis is
  back (the HTTP 500 of the first handshakes after a restart), and starts one probe
  that pings Redis with a growing pause, at most ``PROBE_MAX_PAUSE`` seconds.
- A receive that fails, or that starts while the layer is down, returns the message
  ``{"type": "layer.unavailable"}`` instead of raising. The next receive on that
  channel waits until the probe gets an answer and returns
  ``{"type": "layer.restored"}``; from then on receiving goes on as before.

A consumer thus learns of an outage and of its end through two ordinary messages
(handlers ``layer_unavailable`` and ``layer_restored``), keeps its socket, and puts
itself back into the groups and the registry that a Redis restarted empty has
forgotten (``outage.restore``). Everything else (``send``, ``group_send``,
``group_add``) still raises while Redis is away: what cannot be delivered is refused,
and ``REDIS_ERRORS`` is what to catch.

Nothing here retries a command: a connection cut while Redis restarts must be seen
as an outage, or the groups the restart forgot would never be joined again.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref

import redis.exceptions
from channels_redis import core

logger = logging.getLogger(__name__)

UNAVAILABLE = "layer.unavailable"
RESTORED = "layer.restored"

# What Redis being away (refusing, cut, restarting, loading) raises; redis-py wraps
# the socket's own errors in these.
# What Redis being away raises (registry.redis_errors(), once redis-py is loaded).
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

PROBE_FIRST_PAUSE = 0.05  # seconds
# The longest pause between probes: a consumer is back in the registry at most this
# long after Redis answers again, well within a heartbeat refresh (20 s by default).
PROBE_MAX_PAUSE = 1.0


class _Outage:
    """One event loop's view of whether Redis answers."""

    def __init__(self) -> None:
        self.up = asyncio.Event()
        self.up.set()
        # Channels told of the outage and not yet of its end.
        self.told: set[str] = set()
        self.began = 0.0
        self.probe: asyncio.Task | None = None

    @property
    def down(self) -> bool:
        return not self.up.is_set()


class RedisChannelLayer(core.RedisChannelLayer):
    """channels-redis' layer, whose ``receive`` reports an outage instead of raising.

    Same name, so that ``info`` and ``stats`` still show ``RedisChannelLayer``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._outages: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _outage(self) -> _Outage:
        loop = asyncio.get_running_loop()
        outage = self._outages.get(loop)
        if outage is None:
            outage = self._outages[loop] = _Outage()
        return outage

    async def receive(self, channel: str) -> dict:
        outage = self._outage()
        while True:
            if channel in outage.told:
                try:
                    await outage.up.wait()
                finally:
                    # Also when the consumer is gone meanwhile (cancelled).
                    outage.told.discard(channel)
                return {"type": RESTORED}
            if outage.down:
                outage.told.add(channel)
                return {"type": UNAVAILABLE}
            try:
                return await super().receive(channel)
            except REDIS_ERRORS as exc:
                await self._went_away(outage, exc)

    async def _went_away(self, outage: _Outage, exc: BaseException) -> None:
        if outage.down:
            return
        outage.up.clear()
        outage.began = time.monotonic()
        logger.warning(
            "channel layer: Redis is unavailable (%s); connections stay open and "
            "are restored when it answers again",
            exc,
        )
        outage.probe = asyncio.ensure_future(self._wait_for_redis(outage))
        await self._forget_idle_connections()

    async def _wait_for_redis(self, outage: _Outage) -> None:
        pause = PROBE_FIRST_PAUSE
        while True:
            await asyncio.sleep(pause)
            try:
                for index in range(self.ring_size):
                    await self.connection(index).ping()
            except Exception as exc:
                # Whatever it is (refused, loading, a password not yet set), every
                # consumer waits for this probe: it must not end before Redis does.
                logger.debug("channel layer: Redis does not answer yet (%s)", exc)
                pause = min(pause * 2, PROBE_MAX_PAUSE)
                continue
            break
        # Connections opened while it was restarting may be half-dead: start afresh.
        await self._forget_idle_connections()
        logger.warning(
            "channel layer: Redis answers again after %.1f s; restoring connections",
            time.monotonic() - outage.began,
        )
        outage.probe = None
        outage.up.set()

    async def _forget_idle_connections(self) -> None:
        for index in range(self.ring_size):
            pool = self.connection(index).connection_pool
            try:
                await pool.disconnect(inuse_connections=False)
            except (redis.exceptions.RedisError, OSError) as exc:
                # Closing a dead socket may complain; it is closed all the same.
                logger.debug("channel layer: closing idle connections: %s", exc)
