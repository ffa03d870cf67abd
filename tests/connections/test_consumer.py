"""The attendees' WebSocket at ws/world/<world_id>/, through the whole ASGI app."""

from __future__ import annotations

import datetime as dt

import jwt
import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from apps.accounts.models import User
from apps.connections.models import ChatMessage
from apps.connections.services import current_label
from apps.worlds.services import create_world, generate_token
from config.asgi import application

from .communicators import TIMEOUT, ask, attendee, connect, scenario


def test_ping_before_and_after_authentication(harbor_live, token):
    async def body():
        comm = await connect()
        assert await ask(comm, ["ping", 1234]) == ["pong", 1234]
        assert (await ask(comm, ["authenticate", {"token": token()}]))[0] == (
            "authenticated"
        )
        assert await ask(comm, ["ping", 5678]) == ["pong", 5678]
        await comm.disconnect()

    scenario(body)


def test_authenticate_answers_world_and_the_rooms_the_traits_allow(harbor_live, token):
    async def body():
        comm = await connect()
        reply = await ask(comm, ["authenticate", {"token": token(["ticket"], "u1")}])
        assert reply[0] == "authenticated"
        assert reply[1]["world"] == {"id": "harborconf", "title": harbor_live.title}
        assert [r["id"] for r in reply[1]["rooms"]] == [
            "welcome",
            "main-stage",
            "hallway",
            "gallery",
        ]
        assert reply[1]["user"]["traits"] == ["ticket"]
        await comm.disconnect()

        comm = await connect()
        reply = await ask(comm, ["authenticate", {"token": token([], "u2")}])
        assert [r["id"] for r in reply[1]["rooms"]] == ["welcome", "hallway", "gallery"]
        await comm.disconnect()

    scenario(body)

    assert set(
        User.objects.filter(world=harbor_live).values_list("token_id", flat=True)
    ) == {
        "u1",
        "u2",
    }


def test_reconnecting_updates_the_attendees_traits(harbor_live, token):
    async def body():
        for traits in (["ticket"], ["ticket", "moderator"]):
            comm = await attendee(token(traits, "same-uid"))
            await comm.disconnect()

    scenario(body)
    user = harbor_live.attendees.get(token_id="same-uid")
    assert user.traits == ["ticket", "moderator"]


def expired_token(world) -> str:
    entry = world.config["JWT_secrets"][0]
    now = dt.datetime.now(dt.UTC)
    claims = {
        "iss": entry["issuer"],
        "aud": entry["audience"],
        "iat": int((now - dt.timedelta(days=2)).timestamp()),
        "exp": int((now - dt.timedelta(days=1)).timestamp()),
        "uid": "late",
        "traits": [],
    }
    return jwt.encode(claims, entry["secret"], algorithm="HS256")


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({}, "auth.missing_token"),
        ({"token": ""}, "auth.missing_token"),
        ({"token": "not-a-jwt"}, "auth.invalid_token"),
        ({"token": 42}, "auth.invalid_token"),
        ("expired", "auth.expired_token"),
    ],
)
def test_refused_tokens_leave_the_connection_usable(harbor_live, token, payload, code):
    if payload == "expired":
        payload = {"token": expired_token(harbor_live)}

    async def body():
        comm = await connect()
        reply = await ask(comm, ["authenticate", payload])
        assert reply[0] == "error"
        assert reply[1]["code"] == code
        # Still open, still unauthenticated, and a good token still works.
        assert await ask(comm, ["ping", 1]) == ["pong", 1]
        assert (await ask(comm, ["room.enter", 1, {"room": "hallway"}]))[2][
            "code"
        ] == "protocol.unauthenticated"
        assert (await ask(comm, ["authenticate", {"token": token()}]))[0] == (
            "authenticated"
        )
        await comm.disconnect()

    scenario(body)


def test_a_token_of_another_world_is_invalid(harbor_live, token):

    other = create_world("other", "Other", "other.example.org")
    foreign = generate_token(other, ["ticket"])

    async def body():
        comm = await connect()
        reply = await ask(comm, ["authenticate", {"token": foreign}])
        assert reply == [
            "error",
            {"code": "auth.invalid_token", "message": reply[1]["message"]},
        ]
        await comm.disconnect()

    scenario(body)


def test_anything_but_ping_and_authenticate_needs_authentication(harbor_live):
    async def body():
        comm = await connect()
        reply = await ask(comm, ["chat.send", 7, {"room": "hallway", "text": "hi"}])
        assert reply[:2] == ["error", 7]
        assert reply[2]["code"] == "protocol.unauthenticated"
        await comm.disconnect()

    scenario(body)
    assert ChatMessage.objects.count() == 0


def test_unknown_world_is_told_and_closed(transactional_db):
    async def body():
        comm = await connect("nosuchworld")
        reply = await comm.receive_json_from(timeout=TIMEOUT)
        assert reply[0] == "error"
        assert reply[1]["code"] == "world.unknown_world"
        closed = await comm.receive_output(timeout=TIMEOUT)
        assert closed == {"type": "websocket.close", "code": 4004}

    scenario(body)


@pytest.mark.parametrize(
    "text",
    ["not json", "{}", "[]", "[1, 2]", '"ping"', '["room.enter", 1]', '["x", 1, 2]'],
)
def test_bad_frames_are_refused_and_the_connection_stays(harbor_live, token, text):
    async def body():
        comm = await attendee(token())
        await comm.send_to(text_data=text)
        reply = await comm.receive_json_from(timeout=TIMEOUT)
        assert reply[0] == "error"
        assert reply[-1]["code"] == "protocol.invalid_frame"
        assert await ask(comm, ["ping", 2]) == ["pong", 2]
        await comm.disconnect()

    scenario(body)


def test_binary_frames_are_invalid(harbor_live):
    async def body():
        comm = await connect()
        await comm.send_to(bytes_data=b"\x00\x01")
        reply = await comm.receive_json_from(timeout=TIMEOUT)
        assert reply[1]["code"] == "protocol.invalid_frame"
        await comm.disconnect()

    scenario(body)


def test_unknown_action(harbor_live, token):
    async def body():
        comm = await attendee(token())
        reply = await ask(comm, ["poll.vote", 3, {}])
        assert reply[:2] == ["error", 3]
        assert reply[2]["code"] == "protocol.unknown_action"
        await comm.disconnect()

    scenario(body)


def test_too_large_frame_is_refused_and_closed(harbor_live, settings):
    settings.CONNECTIONS_MAX_FRAME_BYTES = 100

    async def body():
        comm = await connect()
        await comm.send_json_to(["ping", "x" * 200])
        reply = await comm.receive_json_from(timeout=TIMEOUT)
        assert reply[1]["code"] == "protocol.frame_too_large"
        closed = await comm.receive_output(timeout=TIMEOUT)
        assert closed == {"type": "websocket.close", "code": 1009}

    scenario(body)


def test_rooms_enter_leave_and_chat_is_broadcast_and_stored(harbor_live, token):
    async def body():
        ann = await attendee(token(["ticket"], "ann"))
        bob = await attendee(token(["ticket"], "bob"))
        for comm in (ann, bob):
            assert await ask(comm, ["room.enter", 1, {"room": "hallway"}]) == [
                "success",
                1,
                {"room": "hallway"},
            ]
        reply = await ask(ann, ["chat.send", 2, {"room": "hallway", "text": "hi all"}])
        # The sender sees the broadcast and the reply, in either order.
        frames = [reply, await ann.receive_json_from(timeout=TIMEOUT)]
        success = next(f for f in frames if f[0] == "success")
        assert success[1] == 2
        message = success[2]["message"]
        assert message["text"] == "hi all"
        assert message["room"] == "hallway"
        assert ["chat.message", message] in frames
        assert await bob.receive_json_from(timeout=TIMEOUT) == ["chat.message", message]

        # After leaving, bob hears nothing more; chat there now needs entering again.
        assert (await ask(bob, ["room.leave", 3, {"room": "hallway"}]))[0] == "success"
        reply = await ask(bob, ["chat.send", 4, {"room": "hallway", "text": "x"}])
        assert reply[2]["code"] == "room.not_entered"
        await ask(ann, ["chat.send", 5, {"room": "hallway", "text": "bye"}])
        await ann.receive_json_from(timeout=TIMEOUT)
        assert await bob.receive_nothing(timeout=0.3)
        await ann.disconnect()
        await bob.disconnect()

    scenario(body)
    ann = harbor_live.attendees.get(token_id="ann")
    assert list(
        ChatMessage.objects.values_list("sender", "room__import_id", "text")
    ) == [
        (ann.pk, "hallway", "hi all"),
        (ann.pk, "hallway", "bye"),
    ]


@pytest.mark.parametrize(
    ("traits", "room", "code"),
    [
        ([], "main-stage", "room.unknown_room"),  # needs the ticket trait
        (["ticket"], "nowhere", "room.unknown_room"),
    ],
)
def test_rooms_the_traits_do_not_allow(harbor_live, token, traits, room, code):
    async def body():
        comm = await attendee(token(traits))
        reply = await ask(comm, ["room.enter", 1, {"room": room}])
        assert reply[:2] == ["error", 1]
        assert reply[2]["code"] == code
        await comm.disconnect()

    scenario(body)


@pytest.mark.parametrize(
    ("room", "text", "code"),
    [
        ("welcome", "hi", "chat.unavailable"),  # no chat.native module
        ("gallery", "hi", "chat.denied"),  # chat.read only
        ("hallway", "", "chat.invalid_text"),
        ("hallway", "x" * 4001, "chat.invalid_text"),
        ("hallway", ["hi"], "chat.invalid_text"),
    ],
)
def test_chat_refusals(harbor_live, token, room, text, code):
    async def body():
        # No ticket: no world-wide participant role, only what each room grants.
        comm = await attendee(token([]))
        assert (await ask(comm, ["room.enter", 1, {"room": room}]))[0] == "success"
        reply = await ask(comm, ["chat.send", 2, {"room": room, "text": text}])
        assert reply[:2] == ["error", 2]
        assert reply[2]["code"] == code
        await comm.disconnect()

    scenario(body)
    assert ChatMessage.objects.count() == 0


def test_connection_limit_replaces_the_oldest(harbor_live, token, registry):
    harbor_live.config["connection_limit"] = 2
    harbor_live.save()

    async def body():
        first = await attendee(token(["ticket"], "carol"))
        second = await attendee(token(["ticket"], "carol"))
        other = await attendee(token(["ticket"], "dave"))
        third = await attendee(token(["ticket"], "carol"))
        assert await first.receive_json_from(timeout=TIMEOUT) == [
            "connection.replaced",
            {},
        ]
        closed = await first.receive_output(timeout=TIMEOUT)
        assert closed == {"type": "websocket.close", "code": 4001}
        for comm in (second, other, third):
            assert await ask(comm, ["ping", 1]) == ["pong", 1]
            await comm.disconnect()

    scenario(body)


def test_unlimited_permission_ignores_the_limit(harbor_live, token, registry):
    harbor_live.config["connection_limit"] = 1
    harbor_live.save()

    async def body():
        first = await attendee(token(["admin"], "root"))
        second = await attendee(token(["admin"], "root"))
        assert await first.receive_nothing(timeout=0.3)
        for comm in (first, second):
            assert await ask(comm, ["ping", 1]) == ["pong", 1]
            await comm.disconnect()

    scenario(body)


def only_channel(registry) -> str:
    (channel,) = registry.members(current_label())
    return channel


def test_registered_while_connected(harbor_live, registry):
    async def body():
        comm = await connect()
        assert registry.counts() == {current_label(): 1}
        await comm.disconnect()
        assert registry.counts() == {}

    scenario(body)


def test_drop_message_closes(harbor_live, token, registry):
    async def body():
        comm = await attendee(token())
        await get_channel_layer().send(
            only_channel(registry), {"type": "connections.drop"}
        )
        closed = await comm.receive_output(timeout=TIMEOUT)
        assert closed == {"type": "websocket.close", "code": 1001}

    scenario(body)


def test_reload_message_tells_then_closes(harbor_live, registry, settings):
    settings.CONNECTIONS_RELOAD_GRACE = 0.1

    async def body():
        comm = await connect()
        await get_channel_layer().send(
            only_channel(registry), {"type": "connections.reload"}
        )
        assert await comm.receive_json_from(timeout=TIMEOUT) == [
            "connection.reload",
            {},
        ]
        closed = await comm.receive_output(timeout=TIMEOUT)
        assert closed == {"type": "websocket.close", "code": 1001}

    scenario(body)


@pytest.mark.parametrize(
    ("origin", "accepted"),
    [
        ("https://harbor.example.org", True),  # the world's domain
        ("http://localhost:8000", True),  # ALLOWED_HOSTS
        ("https://evil.example.net", False),
        ("https://harbor.example.org.evil.example.net", False),
        ("null", False),
    ],
)
def test_origin_check(harbor_live, origin, accepted):
    async def body():
        comm = WebsocketCommunicator(
            application,
            "/ws/world/harborconf/",
            headers=[(b"origin", origin.encode())],
        )
        connected, _ = await comm.connect(timeout=TIMEOUT)
        assert connected is accepted
        if connected:
            await comm.disconnect()

    scenario(body)


def test_origin_of_another_worlds_domain_is_refused(harbor_live):

    create_world("other", "Other", "other.example.org")

    async def body():
        comm = WebsocketCommunicator(
            application,
            "/ws/world/harborconf/",
            headers=[(b"origin", b"https://other.example.org")],
        )
        connected, _ = await comm.connect(timeout=TIMEOUT)
        assert connected is False

    scenario(body)
