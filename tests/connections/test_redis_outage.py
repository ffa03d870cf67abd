"""A Redis restart disconnects no one: two real server processes, 50 real clients, and
a private redis-server that is killed for 10 s and started again empty."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from django.core.management.base import CommandError
from websockets.asyncio.client import connect

from apps.connections.models import ChatMessage
from apps.connections.registry import get_registry, user_key
from tests.conftest import database_url

from .server import Server, server_env
from .test_live import TIMEOUT, counts, in_thread, next_frame

pytestmark = pytest.mark.postgres

OUTAGE = 10.0  # seconds without Redis
REFRESH = 3.0  # the servers' CONNECTIONS_HEARTBEAT_REFRESH
PER_SERVER = 25
LATE = 5  # clients per server that connect the moment Redis is back


@pytest.fixture
def outage_servers(harbor_live, private_redis, base_env):
    started: list[Server] = []
    for commit in ("aaa111", "bbb222"):
        started.append(
            Server(
                server_env(
                    base_env,
                    DATABASE_URL=database_url(),
                    REDIS_URL=private_redis.url,
                    STAGEHAND_COMMIT=commit,
                    STAGEHAND_ENVIRONMENT="test",
                    CONNECTIONS_HEARTBEAT_WINDOW="60",
                    CONNECTIONS_HEARTBEAT_REFRESH=str(REFRESH),
                )
            )
        )
    try:
        for server in started:
            server.wait_ready()
        yield started
    finally:
        for server in started:
            server.stop()


async def frames_until(ws, action: str) -> tuple[list, list[list]]:
    """Read frames until one whose action is ``action``; return it and the others."""
    others = []
    while (frame := await next_frame(ws))[0] != action:
        others.append(frame)
    return frame, others


async def ask(ws, frame: list) -> list:
    """Send ``frame``; return the reply to it (any other frame before it is left)."""
    await ws.send(json.dumps(frame))
    while True:
        reply = await next_frame(ws)
        if frame[0] == "ping" and reply[0] == "pong":
            return reply
        if reply[0] in ("success", "error") and reply[1] == frame[1]:
            return reply


async def attendee(server: Server, token: str, opened: list) -> tuple:
    """A client authenticated and in the hallway; return it and what else it got."""
    ws = await connect(f"{server.url}/ws/world/harborconf/", open_timeout=TIMEOUT)
    opened.append(ws)
    await ws.send(json.dumps(["authenticate", {"token": token}]))
    _, others = await frames_until(ws, "authenticated")
    entered = await ask(ws, ["room.enter", 1, {"room": "hallway"}])
    assert entered == ["success", 1, {"room": "hallway"}], entered
    return ws, others


async def attendees(servers: list[Server], tokens: list[str], opened: list) -> list:
    """Clients spread over ``servers``, each authenticated and in the hallway."""
    pairs = await asyncio.gather(
        *(attendee(servers[i % len(servers)], t, opened) for i, t in enumerate(tokens))
    )
    return [ws for ws, _ in pairs]


def test_a_redis_restart_disconnects_no_one(outage_servers, private_redis, token):
    registry = get_registry()

    def expected(per_server: int) -> dict[str, int]:
        return {"aaa111.test": per_server, "bbb222.test": per_server}

    async def body(opened: list):
        clients = await attendees(
            outage_servers, [token() for _ in range(2 * PER_SERVER)], opened
        )
        assert await counts() == expected(PER_SERVER)

        await asyncio.to_thread(private_redis.kill)
        down_at = time.monotonic()
        # Each client is told that live updates pause and that it should stay.
        for ws in clients:
            frame, others = await frames_until(ws, "connection.degraded")
            assert others == []
            assert frame[1]["code"] == "service.unavailable"
        for ws in clients:
            assert await ask(ws, ["ping", "still there?"]) == ["pong", "still there?"]
        # What needs Redis says so instead of crashing the connection.
        reply = await ask(
            clients[0], ["chat.send", 2, {"room": "hallway", "text": "lost?"}]
        )
        assert reply[:2] == ["error", 2] and reply[2]["code"] == "service.unavailable"
        assert await ask(clients[0], ["ping", 1]) == ["pong", 1]
        # Leaving needs Redis too; refused, the room stays entered (chat below).
        reply = await ask(clients[1], ["room.leave", 4, {"room": "hallway"}])
        assert reply[:2] == ["error", 4] and reply[2]["code"] == "service.unavailable"
        with pytest.raises(CommandError, match="Redis"):
            await in_thread("drop")
        # A client may even connect and authenticate meanwhile, on either server.
        during = await attendees(outage_servers, [token(), token()], opened)

        await asyncio.sleep(max(0.0, down_at + OUTAGE - time.monotonic()))
        await asyncio.to_thread(private_redis.start)
        back_at = time.monotonic()
        # The first handshakes after the restart succeed (no stale pool, no 500).
        late = await attendees(
            outage_servers, [token() for _ in range(2 * LATE)], opened
        )
        everyone = clients + during + late
        for ws in clients + during:
            frame, _ = await frames_until(ws, "connection.restored")
        # Re-registered within one heartbeat refresh of Redis being back.
        total = PER_SERVER + 1 + LATE
        seen = await counts()
        while seen != expected(total) and time.monotonic() < back_at + REFRESH:
            await asyncio.sleep(0.1)
            seen = await counts()
        assert seen == expected(total)
        # Each attendee holds its connection_limit slot again (or for the first time).
        assert len(list(registry._client().scan_iter(user_key("*")))) == 2 * total

        # The rooms' groups are joined again: chat reaches everyone, on both servers.
        sender = clients[0]
        await sender.send(
            json.dumps(["chat.send", 3, {"room": "hallway", "text": "back"}])
        )
        reply, _ = await frames_until(sender, "success")
        message = reply[2]["message"]
        for ws in everyone[1:]:
            frame, _ = await frames_until(ws, "chat.message")
            assert frame == ["chat.message", message]

        # And so are the labels' groups: a drop reaches both servers' hubs.
        out = await in_thread("drop")
        assert out.splitlines()[-1] == (
            f"Dropped {2 * total} connections (labels: aaa111.test, bbb222.test)"
        )
        for ws in everyone:
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
            assert ws.close_code == 1001
        assert await counts() == {}

    async def run():
        opened: list = []
        try:
            await body(opened)
        finally:
            for ws in opened:
                await ws.close()

    asyncio.run(run())
    # The chat refused during the outage was not kept either; the one after was.
    assert list(ChatMessage.objects.values_list("text", flat=True)) == ["back"]
