"""The world services other apps build on: lookup, permissions, rooms."""

import pytest
from django.db import IntegrityError, transaction

from apps.accounts.models import User
from apps.worlds import services
from apps.worlds.models import Room


def test_get_world_hides_unknown_and_deleted_worlds(world):
    assert services.get_world("sample") == world
    with pytest.raises(services.WorldNotFound):
        services.get_world("nope")
    services.delete_world(world)
    with pytest.raises(LookupError):
        services.get_world("sample")


@pytest.mark.parametrize(
    ("grants", "traits", "expected"),
    [
        ({"everyone": []}, [], {"everyone"}),
        ({"mod": ["moderator"]}, [], set()),
        ({"mod": ["moderator"]}, ["moderator"], {"mod"}),
        ({"both": ["a", "b"]}, ["a"], set()),
        ({"both": ["a", "b"]}, ["a", "b"], {"both"}),
        ({"any": [["a", "b"]]}, ["b"], {"any"}),
        ({"any": [["a", "b"]]}, ["c"], set()),
        ({"mix": ["x", ["a", "b"]]}, ["x", "a"], {"mix"}),
        ({"mix": ["x", ["a", "b"]]}, ["a", "b"], set()),
    ],
)
def test_roles_for_traits(grants, traits, expected):
    assert services.roles_for_traits(grants, traits) == expected


def test_permissions_come_from_world_and_room_grants(harbor):
    assert services.permissions_for(harbor, []) == {"world:view"}
    assert "room:chat.send" in services.permissions_for(harbor, ["ticket"])
    assert "room:delete" in services.permissions_for(harbor, ["admin"])
    welcome = harbor.rooms.get(import_id="welcome")
    # The welcome room grants participant to everyone, the world does not.
    assert "room:view" in services.permissions_for(harbor, [], welcome)
    assert "room:view" not in services.permissions_for(harbor, [])


def test_visible_rooms(harbor):
    assert [r.import_id for r in services.visible_rooms(harbor, [])] == [
        "welcome",
        "hallway",
    ]
    assert [r.import_id for r in services.visible_rooms(harbor, ["ticket"])] == [
        "welcome",
        "main-stage",
        "hallway",
    ]
    harbor.rooms.filter(import_id="hallway").update(sorting_priority=-1)
    main = harbor.rooms.get(import_id="main-stage")
    main.deleted_at = main.updated_at
    main.save()
    assert [r.import_id for r in services.visible_rooms(harbor, ["ticket"])] == [
        "hallway",
        "welcome",
    ]


def test_attendee_uid_is_unique_per_world_only(world):
    User.objects.create_user("a1", world=world, token_id="t")
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create_user("a2", world=world, token_id="t")
    # Operators have no world and no token id; many of them are fine.
    User.objects.create_user("op1")
    User.objects.create_user("op2")


def test_room_ids_are_unique_per_world(world):
    Room.objects.create(world=world, import_id="r", name="R")
    with pytest.raises(IntegrityError), transaction.atomic():
        Room.objects.create(world=world, import_id="r", name="R again")


def test_purge_deleted_worlds_removes_rooms_and_attendees(world, harbor):
    services.get_or_create_attendee(world, {"uid": "bob", "traits": []})
    Room.objects.create(world=world, import_id="r", name="R")
    services.delete_world(world)
    # purge_deleted_worlds (one transaction for everything) is gone; the purge is it.
    report = services.purge(rooms=False, users=False)
    assert report.counts["worlds"]["worlds deleted"] == 1
    assert not User.objects.filter(token_id="bob").exists()
    assert not Room.objects.filter(world_id="sample").exists()
    assert services.get_world("harborconf") == harbor
