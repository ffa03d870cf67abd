"""Consumers through a Redis outage, in this process: a private redis-server, killed
and started again empty."""

from __future__ import annotations

import asyncio

from apps.connections.models import ChatMessage
from apps.connections.outage import DEGRADED
from apps.connections.registry import get_registry
from apps.connections.services import current_label

from .communicators import TIMEOUT, ask, attendee, connect, scenario

RESTORED = ["connection.restored", {}]


async def frames(comm, n: int) -> list:
    return [await comm.receive_json_from(timeout=TIMEOUT) for _ in range(n)]


def test_a_slot_claimed_again_after_a_restart_keeps_its_first_time(registry):
    async def body():
        assert await registry.claim_slot("carol", "newer", 1, since=200.0) == []
        # The older connection claims again second: it is still the one that goes.
        assert await registry.claim_slot("carol", "older", 1, since=100.0) == ["older"]
        # A new connection is never replaced by its own claim.
        assert await registry.claim_slot("dave", "a", 1) == []
        assert await registry.claim_slot("dave", "b", 1) == ["a"]

    scenario(body)


def test_a_room_through_an_outage(private_redis, harbor_live, token):
    async def body():
        ann, bob = await attendee(token()), await attendee(token())
        for comm in (ann, bob):
            assert (await ask(comm, ["room.enter", 1, {"room": "hallway"}]))[0] == (
                "success"
            )

        await asyncio.to_thread(private_redis.kill)
        for comm in (ann, bob):
            assert await comm.receive_json_from(timeout=TIMEOUT) == [
                "connection.degraded",
                DEGRADED,
            ]
        assert await ask(ann, ["ping", 1]) == ["pong", 1]
        reply = await ask(ann, ["chat.send", 2, {"room": "hallway", "text": "lost?"}])
        assert reply[:2] == ["error", 2]
        assert reply[2]["code"] == "service.unavailable"
        reply = await ask(bob, ["room.leave", 3, {"room": "hallway"}])
        assert reply[:2] == ["error", 3]
        assert reply[2]["code"] == "service.unavailable"

        await asyncio.to_thread(private_redis.start)
        for comm in (ann, bob):
            assert await comm.receive_json_from(timeout=TIMEOUT) == RESTORED
        assert get_registry().counts() == {current_label(): 2}
        # Both are in the room's chat again (Redis forgot it), bob never left.
        sent = await ask(ann, ["chat.send", 4, {"room": "hallway", "text": "back"}])
        assert sent[0] == "success"
        message = sent[2]["message"]
        assert await bob.receive_json_from(timeout=TIMEOUT) == ["chat.message", message]
        for comm in (ann, bob):
            await comm.disconnect()

    scenario(body)
    assert list(ChatMessage.objects.values_list("text", flat=True)) == ["back"]


def test_the_oldest_connection_goes_once_redis_is_back(
    private_redis, harbor_live, token
):
    harbor_live.config["connection_limit"] = 1
    harbor_live.save()

    async def body():
        first = await attendee(token(["ticket"], "carol"))
        await asyncio.to_thread(private_redis.kill)
        assert await first.receive_json_from(timeout=TIMEOUT) == [
            "connection.degraded",
            DEGRADED,
        ]
        # A second socket of carol's meanwhile: both stay until Redis can tell.
        second = await connect()
        await second.send_json_to(
            ["authenticate", {"token": token(["ticket"], "carol")}]
        )
        got = await frames(second, 2)
        assert sorted(frame[0] for frame in got) == [
            "authenticated",
            "connection.degraded",
        ]
        assert await ask(first, ["ping", 1]) == ["pong", 1]

        await asyncio.to_thread(private_redis.start)
        # Whichever claims its slot again first, the older socket is the one replaced.
        assert await frames(first, 2) == [RESTORED, ["connection.replaced", {}]]
        closed = await first.receive_output(timeout=TIMEOUT)
        assert closed == {"type": "websocket.close", "code": 4001}
        assert await second.receive_json_from(timeout=TIMEOUT) == RESTORED
        assert await ask(second, ["ping", 2]) == ["pong", 2]
        await second.disconnect()

    scenario(body)
