import json

import pytest
from django.core.management import CommandError

from apps.worlds import services
from apps.worlds.models import World
from tests.helpers import call


def test_dry_run_counts_and_changes_nothing(harbor):
    services.get_or_create_attendee(harbor, {"uid": "bob", "traits": []})
    out = call("delete_world", "harborconf", "--dry-run")
    assert (
        "Would delete world 'harborconf' (Harbor Conference 2027): 3 rooms, 1 attendee."
        in out
    )
    assert "nothing was changed" in out
    harbor.refresh_from_db()
    assert harbor.deleted_at is None


def test_soft_delete(harbor):
    out = call("delete_world", "harborconf")
    assert "Deleted world 'harborconf'" in out and "3 rooms, 0 attendees" in out
    assert out.rstrip().endswith("World 'harborconf' deleted.")
    world = World.objects.get(pk="harborconf")
    assert world.deleted_at is not None
    assert world.rooms.count() == 3  # the purge job removes them later
    with pytest.raises(services.WorldNotFound):
        services.get_world("harborconf")


def test_unknown_or_already_deleted(harbor):
    with pytest.raises(CommandError, match="No world 'nope'"):
        call("delete_world", "nope")
    call("delete_world", "harborconf")
    with pytest.raises(CommandError, match="No world 'harborconf'"):
        call("delete_world", "harborconf")


def test_json_for_scripts(harbor):
    services.get_or_create_attendee(harbor, {"uid": "bob", "traits": []})
    dry = json.loads(call("delete_world", "harborconf", "--dry-run", "--json"))
    assert dry == {
        "world": "harborconf",
        "title": "Harbor Conference 2027",
        "dry_run": True,
        "deleted": False,
        "rooms": 3,
        "attendees": 1,
    }
    harbor.refresh_from_db()
    assert harbor.deleted_at is None
    done = json.loads(call("delete_world", "harborconf", "--json"))
    assert done == {**dry, "dry_run": False, "deleted": True}
    harbor.refresh_from_db()
    assert harbor.deleted_at is not None
