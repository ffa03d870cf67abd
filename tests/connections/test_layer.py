"""The Redis channel layer through an outage: a private redis-server, killed and
started again empty."""

from __future__ import annotations

import asyncio

from apps.connections.layer import (
    PROBE_MAX_PAUSE,
    RESTORED,
    UNAVAILABLE,
    RedisChannelLayer,
)

from .communicators import TIMEOUT, scenario


def test_receive_reports_an_outage_and_its_end_instead_of_raising(private_redis):
    layer = RedisChannelLayer(
        hosts=[{"address": private_redis.url, "socket_timeout": None}]
    )

    async def body():
        first = await layer.new_channel()
        await layer.send(first, {"type": "before"})
        assert await asyncio.wait_for(layer.receive(first), TIMEOUT) == {
            "type": "before"
        }

        receiving = asyncio.ensure_future(layer.receive(first))
        await asyncio.to_thread(private_redis.kill)
        assert await asyncio.wait_for(receiving, TIMEOUT) == {"type": UNAVAILABLE}
        # A channel that starts receiving during the outage hears of it at once.
        second = await layer.new_channel()
        assert await asyncio.wait_for(layer.receive(second), TIMEOUT) == {
            "type": UNAVAILABLE
        }
        # Then both wait, quietly, for as long as Redis is away.
        waiting = [asyncio.ensure_future(layer.receive(c)) for c in (first, second)]
        done, _ = await asyncio.wait(waiting, timeout=2 * PROBE_MAX_PAUSE)
        assert not done

        await asyncio.to_thread(private_redis.start)
        async with asyncio.timeout(TIMEOUT):
            assert await asyncio.gather(*waiting) == [{"type": RESTORED}] * 2
        # And receiving goes on as before.
        await layer.send(second, {"type": "after"})
        assert await asyncio.wait_for(layer.receive(second), TIMEOUT) == {
            "type": "after"
        }
        await layer.close_pools()

    scenario(body)


def test_a_receiver_that_goes_away_during_the_outage_is_forgotten(private_redis):
    layer = RedisChannelLayer(
        hosts=[{"address": private_redis.url, "socket_timeout": None}]
    )

    async def body():
        channel, witness = await layer.new_channel(), await layer.new_channel()
        receiving = asyncio.ensure_future(layer.receive(channel))
        await asyncio.to_thread(private_redis.kill)
        assert await asyncio.wait_for(receiving, TIMEOUT) == {"type": UNAVAILABLE}
        assert await asyncio.wait_for(layer.receive(witness), TIMEOUT) == {
            "type": UNAVAILABLE
        }
        # The consumer closes while it waits for the end of the outage.
        waiting = asyncio.ensure_future(layer.receive(channel))
        witnessing = asyncio.ensure_future(layer.receive(witness))
        done, _ = await asyncio.wait([waiting], timeout=PROBE_MAX_PAUSE)
        assert not done
        waiting.cancel()
        await asyncio.wait([waiting])

        await asyncio.to_thread(private_redis.start)
        assert await asyncio.wait_for(witnessing, TIMEOUT) == {"type": RESTORED}
        # A new receive on that channel name is an ordinary one, not a restore.
        await layer.send(channel, {"type": "hello"})
        assert await asyncio.wait_for(layer.receive(channel), TIMEOUT) == {
            "type": "hello"
        }
        await layer.close_pools()

    scenario(body)
