"""What a server process keeps of worlds and terms, and what a handshake still costs."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from apps.connections import snapshots
from apps.worlds import services as worlds

from .communicators import ask, attendee, connect, scenario


@pytest.fixture
def reads(monkeypatch):
    """Count the snapshots read from the database: {"worlds": n, "terms": n}."""
    counted = {"worlds": 0, "terms": 0}
    read_world, read_terms = snapshots.load_world, snapshots.load_terms

    async def world(world_id):
        counted["worlds"] += 1
        return await read_world(world_id)

    async def terms():
        counted["terms"] += 1
        return await read_terms()

    monkeypatch.setattr(snapshots, "load_world", world)
    monkeypatch.setattr(snapshots, "load_terms", terms)
    return counted


def test_handshakes_read_the_world_and_the_terms_once(harbor_live, token, reads):
    async def body():
        for i in range(5):
            await (await attendee(token(uid=f"u{i}"))).disconnect()
        assert reads == {"worlds": 1, "terms": 1}

    scenario(body)


def test_a_saved_world_is_read_again(harbor_live, harbor_live_config, token, reads):
    async def body():
        await (await attendee(token())).disconnect()
        harbor_live_config["world"]["title"] = "Harbor, renamed"
        await worlds_import(harbor_live_config)
        comm = await connect()
        reply = await ask(comm, ["authenticate", {"token": token()}])
        assert reply[1]["world"]["title"] == "Harbor, renamed"
        assert reads["worlds"] == 2
        await comm.disconnect()

    scenario(body)


def test_a_room_added_after_connecting_can_be_entered(
    harbor_live, harbor_live_config, token
):
    async def body():
        comm = await attendee(token())
        harbor_live_config["rooms"].append({"id": "annex", "name": "Annex"})
        await worlds_import(harbor_live_config)
        reply = await ask(comm, ["room.enter", 1, {"room": "annex"}])
        assert reply == ["success", 1, {"room": "annex"}]
        await comm.disconnect()

    scenario(body)


async def worlds_import(config: dict) -> None:
    await database_sync_to_async(worlds.import_config)(config)


def test_a_returning_attendee_is_one_query_and_a_new_one_an_insert(
    harbor_live, django_assert_num_queries
):
    claims = [{"uid": f"u{i}", "traits": ["ticket"]} for i in range(50)]
    # New: the lookup, and one INSERT for all in one transaction (BEGIN, COMMIT).
    with django_assert_num_queries(4):
        created = worlds.find_or_create_attendees(harbor_live, claims, [])
    # Returning, with the acceptance of two terms looked up along: one query.
    with django_assert_num_queries(1):
        again = worlds.find_or_create_attendees(harbor_live, claims, [1, 2])
    assert [a.pk for a in again] == [a.pk for a in created]
    assert all(a.accepted == frozenset() for a in again)
    # Changed traits: a write for that one only.
    claims[0]["traits"] = ["ticket", "moderator"]
    with django_assert_num_queries(2):
        worlds.find_or_create_attendees(harbor_live, claims, [])
