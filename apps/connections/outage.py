"""What a consumer does while Redis is away, and once it is back.

The channel layer (``layer.py``) tells each consumer of an outage with a
``layer.unavailable`` message and of its end with ``layer.restored``. Meanwhile the
socket stays open: pings are answered, and a request that needs Redis (chat, entering
a room) gets ``["error", id, {"code": "service.unavailable", ...}]``. Bookkeeping
that can wait (a heartbeat, a connection_limit slot, unregistering) is skipped and
redone by ``restore``, since a Redis restarted empty has forgotten the registry and
every group membership anyway. Each process's hub joins its labels' groups again by
itself (``Hub.refresh``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator

from . import services
from .layer import REDIS_ERRORS
from .protocol import REPLACED

logger = logging.getLogger(__name__)

# The client's ["connection.degraded", DEGRADED] while Redis is away.
DEGRADED = {
    "code": "service.unavailable",
    "message": (
        "The server lost its message bus for a moment: chat and operator actions "
        "pause until it is back. Stay connected: your session and rooms are kept, "
        "and nothing sent to you is lost (what cannot be delivered is refused to "
        "its sender)."
    ),
}
# The message of a request's service.unavailable error.
UNAVAILABLE = (
    "The server cannot reach its message bus (Redis) right now, so this could not "
    "be done and nothing was changed; stay connected and try again in a few seconds."
)


@contextlib.asynccontextmanager
async def tolerated(what: str) -> AsyncIterator[None]:
    """Skip the rest of the block, instead of failing, while Redis is away."""
    try:
        yield
    except REDIS_ERRORS as exc:
        logger.debug("connections: could not %s, Redis is away (%s)", what, exc)


async def claim_slot(consumer, *, again: bool = False) -> None:
    """Take the consumer's connection_limit slot; tell the connections it replaces.

    ``again``: after a Redis restart, as of when it was first claimed; the consumer
    may then be among those replaced itself.
    """
    replaced = await services.claim_slot(
        consumer.label,
        consumer.slot_user,
        consumer.channel_name,
        consumer.slot_limit,
        since=consumer.slot_since if again else None,
    )
    consumer.last_beat = time.monotonic()
    for channel in replaced:
        await consumer.channel_layer.send(channel, {"type": REPLACED})


async def restore(consumer) -> bool:
    """Put ``consumer`` back where Redis forgot it; return whether that was done.

    Its heartbeat in the registry (so it is counted at once), its rooms' chat groups
    and its connection_limit slot, which keeps the time it was first claimed, so
    that the oldest connections are still the ones replaced.
    """
    if consumer.closing:
        return False
    try:
        if consumer.registered:
            await services.beat(consumer.label, consumer.channel_name)
            consumer.last_beat = time.monotonic()
        async with services.gate():
            for group in sorted(consumer.chat_groups):
                await consumer.channel_layer.group_add(group, consumer.channel_name)
        if consumer.slot_user is not None:
            await claim_slot(consumer, again=True)
    except REDIS_ERRORS as exc:
        # Away again: the layer reports that outage, and its end, once more.
        logger.warning(
            "connections: could not restore %s (%s)", consumer.channel_name, exc
        )
        return False
    return True
