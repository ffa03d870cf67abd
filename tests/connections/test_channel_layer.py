"""The configured Redis channel layer, as the consumers and hubs use it."""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import get_channel_layer

from .communicators import scenario


@pytest.mark.redis
def test_a_cancelled_receive_stops():
    # A consumer's (and a hub's) receive is cancelled when it closes. With a socket
    # timeout, redis-py sends through asyncio.wait_for, which on Python 3.11 can
    # swallow the cancellation; channels-redis then polls (BZPOPMIN) forever.
    async def body():
        layer = get_channel_layer()
        for step in range(100):
            receiving = asyncio.ensure_future(layer.receive(await layer.new_channel()))
            # Cancel at every moment of the first 20 ms: before, during and after
            # the first round trips.
            await asyncio.sleep(step * 0.0002)
            receiving.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(receiving), 15)

    scenario(body)
