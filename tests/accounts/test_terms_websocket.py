"""The terms flow over the real WebSocket (the whole ASGI app, in-process)."""

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from apps.accounts import services
from apps.accounts.models import TermsAcceptance
from apps.worlds import services as worlds
from config.asgi import application

TIMEOUT = 5


@pytest.fixture
def world(transactional_db):
    return worlds.create_world("expo", "Expo", "expo.example.org")


@pytest.fixture
def token(world):
    return lambda uid: worlds.generate_token(world, ["attendee"], uid=uid)


def scenario(coroutine_function):
    return async_to_sync(coroutine_function)()


async def connect() -> WebsocketCommunicator:
    comm = WebsocketCommunicator(application, "/ws/world/expo/")
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected
    return comm


async def ask(comm, frame) -> list:
    await comm.send_json_to(frame)
    return await comm.receive_json_from(timeout=TIMEOUT)


def test_without_terms_authentication_is_immediate(token):
    async def body():
        comm = await connect()
        assert (await ask(comm, ["authenticate", {"token": token("u1")}]))[0] == (
            "authenticated"
        )
        await comm.disconnect()

    scenario(body)


def test_terms_required_then_accepted_then_authenticated(token):
    now = timezone.now()
    old = services.import_terms(
        "tos", "1", "# Terms v1\n", active_from=now - timedelta(days=9)
    )
    tos = services.import_terms(
        "tos", "2", "# Terms v2\n", active_from=now - timedelta(days=1)
    )
    privacy = services.import_terms(
        "privacy", "1", "# Privacy\n", active_from=now - timedelta(days=1)
    )
    services.import_terms(
        "tos", "3", "# Terms v3\n", active_from=now + timedelta(days=30)
    )
    services.import_terms("news", "1", "# News\n", required=False)

    async def body():
        comm = await connect()
        reply = await ask(comm, ["authenticate", {"token": token("u1")}])
        assert reply[0] == "auth.terms_required"
        terms = reply[1]["terms"]
        assert [(t["slug"], t["version"], t["name"]) for t in terms] == [
            ("privacy", "1", "Privacy"),
            ("tos", "2", "Terms v2"),
        ]
        assert terms[1]["text"] == "# Terms v2\n"
        # Nothing else works before the terms are accepted.
        reply = await ask(comm, ["room.enter", 1, {"room": "lobby"}])
        assert reply == [
            "error",
            1,
            {
                "code": "protocol.unauthenticated",
                "message": "Send authenticate before anything else.",
            },
        ]
        # An outdated version is refused, and nothing is recorded.
        reply = await ask(comm, ["auth.accept_terms", {"terms": [old.pk]}])
        assert reply[0] == "error" and reply[1]["code"] == "auth.invalid_terms"
        reply = await ask(comm, ["auth.accept_terms", {"terms": "all"}])
        assert reply[1]["code"] == "protocol.invalid_frame"
        # Accepting one leaves the other pending.
        reply = await ask(comm, ["auth.accept_terms", {"terms": [tos.pk]}])
        assert reply[0] == "auth.terms_required"
        assert [t["slug"] for t in reply[1]["terms"]] == ["privacy"]
        reply = await ask(comm, ["auth.accept_terms", {"terms": [privacy.pk]}])
        assert reply[0] == "authenticated"
        assert reply[1]["world"]["id"] == "expo"
        reply = await ask(comm, ["auth.accept_terms", {"terms": [privacy.pk]}])
        assert reply[1]["code"] == "auth.no_terms_pending"
        await comm.disconnect()

        # Next time, nothing to accept.
        comm = await connect()
        assert (await ask(comm, ["authenticate", {"token": token("u1")}]))[0] == (
            "authenticated"
        )
        await comm.disconnect()

    scenario(body)
    recorded = TermsAcceptance.objects.order_by("terms__slug")
    assert [(a.terms.slug, a.terms.version) for a in recorded] == [
        ("privacy", "1"),
        ("tos", "2"),
    ]
    assert all(a.accepted_at >= now for a in recorded)
    assert {a.user.token_id for a in recorded} == {"u1"}


def test_a_purged_attendee_token_is_refused_over_the_websocket(token, world):
    purged_token = token("gone")
    worlds.get_or_create_attendee(world, worlds.verify_token(world, purged_token))
    services.purge_user(services.find_attendee("expo", "gone"))

    async def body():
        comm = await connect()
        reply = await ask(comm, ["authenticate", {"token": purged_token}])
        assert reply[0] == "error"
        assert reply[1]["code"] == "auth.invalid_token"
        await comm.disconnect()

    scenario(body)
