"""Faults inside the consumer and hostile handshakes: the connection survives what it
can, closes with a documented code what it cannot, and leaves the count at once.

With real server processes: test_live.py.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from apps.connections import snapshots
from apps.connections.modules import auth, rooms
from apps.connections.services import current_label
from config.asgi import application

from .communicators import TIMEOUT, ask, attendee, connect, scenario


def failing(exception: Exception):
    """An async stand-in for a service that fails, as any bug or outage could."""

    async def fail(*args, **kwargs):
        raise exception

    return fail


def tracebacks(caplog, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info and text in str(r.exc_info[1])]


def test_a_failing_handler_answers_server_error_and_the_connection_stays(
    harbor_live, token, monkeypatch, caplog
):
    monkeypatch.setattr(rooms, "find_room", failing(RuntimeError("boom")))

    async def body():
        comm = await attendee(token())
        reply = await ask(comm, ["room.enter", 7, {"room": "hallway"}])
        assert reply[:2] == ["error", 7]
        assert reply[2]["code"] == "server.error"
        assert "still usable" in reply[2]["message"]
        assert "boom" not in reply[2]["message"]  # no internals to the client
        assert await ask(comm, ["ping", 1]) == ["pong", 1]
        assert (await ask(comm, ["room.leave", 8, {"room": "hallway"}]))[2][
            "code"
        ] == "room.not_entered"
        await comm.disconnect()

    with caplog.at_level(logging.ERROR, logger="apps.connections.consumers"):
        scenario(body)
    (record,) = tracebacks(caplog, "boom")  # logged once, with its traceback
    assert record.name == "apps.connections.consumers"


def test_a_failing_authentication_answers_server_error(
    harbor_live, token, monkeypatch, caplog
):
    monkeypatch.setattr(auth, "load_attendee", failing(OSError("db away")))

    async def body():
        comm = await connect()
        reply = await ask(comm, ["authenticate", {"token": token()}])
        assert reply[0] == "error"
        assert reply[1]["code"] == "server.error"
        assert await ask(comm, ["ping", 1]) == ["pong", 1]
        await comm.disconnect()

    with caplog.at_level(logging.ERROR):
        scenario(body)
    assert len(tracebacks(caplog, "db away")) == 1


def only_channel(registry) -> str:
    (channel,) = registry.members(current_label())
    return channel


def test_a_bad_message_from_the_channel_layer_does_not_end_the_connection(
    harbor_live, token, registry, caplog
):
    # A process of another build (during a deploy) may send what this one cannot
    # handle: a chat.message without its message, a type it does not know.
    async def body():
        comm = await attendee(token())
        layer = get_channel_layer()
        await layer.send(only_channel(registry), {"type": "chat.message"})
        await layer.send(only_channel(registry), {"type": "poll.vote", "poll": 1})
        # Handled in order: once this one arrives, the two before it were handled.
        good = {"type": "chat.message", "message": {"text": "after"}}
        await layer.send(only_channel(registry), good)
        assert await comm.receive_json_from(timeout=TIMEOUT) == [
            "chat.message",
            {"text": "after"},
        ]
        assert await ask(comm, ["ping", 1]) == ["pong", 1]
        assert registry.counts() == {current_label(): 1}
        await comm.disconnect()

    with caplog.at_level(logging.WARNING, logger="apps.connections.consumers"):
        scenario(body)
    assert len(tracebacks(caplog, "'message'")) == 1
    assert "Ignored a message of unknown type 'poll.vote'" in caplog.text


def test_a_cancelled_consumer_leaves_the_count_at_once(harbor_live, token, registry):
    # A server shutting down, or one giving up on a client, cancels the consumer's
    # task without any websocket.disconnect: it must not stay counted for a window.
    async def body():
        comms = [await attendee(token(uid=f"c{i}")) for i in range(3)]
        for comm in comms:
            assert await ask(comm, ["ping", 0]) == ["pong", 0]
        assert registry.counts() == {current_label(): 3}
        for comm in comms[:2]:
            comm.future.cancel()
        await asyncio.wait([c.future for c in comms[:2]], timeout=TIMEOUT)
        assert registry.counts() == {current_label(): 1}
        await comms[2].disconnect()
        assert registry.counts() == {}

    scenario(body)


@pytest.mark.parametrize("world_id", ["\x00", "harbor\x00conf", "w" * 51, "\ud800"])
def test_a_world_id_no_world_can_have_is_an_unknown_world(transactional_db, world_id):
    async def body():
        comm = await connect(world_id)
        reply = await comm.receive_json_from(timeout=TIMEOUT)
        assert reply[1]["code"] == "world.unknown_world"
        closed = await comm.receive_output(timeout=TIMEOUT)
        assert closed == {"type": "websocket.close", "code": 4004}

    scenario(body)


@pytest.mark.parametrize(
    ("path", "origin"),
    [
        ("/ws/world/harborconf/", "http://[::1"),
        ("/ws/world/harborconf/", "https://[not-ipv6]"),
        ("/ws/world/harborconf/", "http://]harbor.example.org"),
        ("/ws/world/\x00/", "https://harbor.example.org"),
        ("/ws/world/harbor\x00conf/", "https://evil.example.net"),
    ],
)
def test_hostile_origins_and_paths_are_refused_not_failed(harbor_live, path, origin):
    async def body():
        comm = WebsocketCommunicator(
            application, path, headers=[(b"origin", origin.encode())]
        )
        connected, _ = await comm.connect(timeout=TIMEOUT)
        assert connected is False

    scenario(body)


def test_a_connection_that_cannot_be_opened_closes_with_1011(
    transactional_db, monkeypatch, caplog
):
    monkeypatch.setattr(snapshots, "load_world", failing(OSError("db away")))

    async def body():
        comm = await connect()
        reply = await comm.receive_json_from(timeout=TIMEOUT)
        assert reply[0] == "error"
        assert reply[1]["code"] == "server.error"
        closed = await comm.receive_output(timeout=TIMEOUT)
        assert closed == {"type": "websocket.close", "code": 1011}

    with caplog.at_level(logging.ERROR):
        scenario(body)
    assert len(tracebacks(caplog, "db away")) == 1
