"""purge on real data: what goes, what stays, dry run, batches, interruption, rerun."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from apps.accounts.models import Terms, TermsAcceptance, User
from apps.connections.models import ChatMessage
from apps.jobs import services
from apps.jobs.models import JobRun
from apps.worlds.models import Room, World

NOW = timezone.now()


def purge(*args: str) -> str:
    out = StringIO()
    call_command("purge", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def make_room(world: World, key: str, deleted: bool = False) -> Room:
    return Room.objects.create(
        world=world, import_id=key, name=key, deleted_at=NOW if deleted else None
    )


def attendee(world: World, uid: str, deleted: bool = False) -> User:
    return User.objects.create(
        username=f"{world.pk}-{uid}",
        world=world,
        token_id=uid,
        display_name=uid.title(),
        deleted_at=NOW if deleted else None,
    )


def say(room: Room, sender: User | None, count: int) -> None:
    ChatMessage.objects.bulk_create(
        ChatMessage(room=room, sender=sender, text=f"hello {i}") for i in range(count)
    )


@pytest.fixture
def data(db):
    """A live world with a soft-deleted room and users, and a soft-deleted world."""
    live = World.objects.create(id="live", title="Live")
    hall, annex = make_room(live, "hall"), make_room(live, "annex", deleted=True)
    bob = attendee(live, "bob")
    carol = attendee(live, "carol", deleted=True)  # chatted: anonymised
    dave = attendee(live, "dave", deleted=True)  # never chatted: still a tombstone
    oscar = User.objects.create_user("oscar", "oscar@example.org")  # an operator
    User.objects.filter(pk=oscar.pk).update(deleted_at=NOW)  # no content: deleted
    say(hall, bob, 3)
    say(hall, carol, 2)
    say(annex, bob, 4)

    gone = World.objects.create(id="gone", title="Gone", deleted_at=NOW)
    stage, lobby = make_room(gone, "stage"), make_room(gone, "lobby", deleted=True)
    erin, frank = attendee(gone, "erin"), attendee(gone, "frank")
    say(stage, erin, 5)
    say(lobby, frank, 6)
    say(hall, frank, 1)  # frank also spoke in the live world
    terms = Terms.objects.create(slug="tos", version="1", name="ToS", text="# ToS")
    TermsAcceptance.objects.create(user=erin, terms=terms)
    return {
        "live": live,
        "hall": hall,
        "bob": bob,
        "carol": carol,
        "dave": dave,
        "frank": frank,
        "oscar": oscar,
    }


def snapshot() -> dict:
    return {
        "worlds": sorted(World.objects.values_list("pk", flat=True)),
        "rooms": sorted(Room.objects.values_list("import_id", flat=True)),
        "messages": ChatMessage.objects.count(),
        "users": sorted(User.objects.values_list("pk", "username", "email")),
        "acceptances": TermsAcceptance.objects.count(),
    }


def test_dry_run_counts_and_changes_nothing(data):
    before = snapshot()
    output = purge("--dry-run")
    assert snapshot() == before
    assert output.splitlines() == [
        "-> Purging worlds (dry run)",
        "   1 worlds deleted",
        "   2 rooms deleted",
        "   11 messages deleted",
        "   2 attendees deleted",
        "-> Purging rooms (dry run)",
        "   1 rooms deleted",
        "   4 messages deleted",
        "-> Purging users (dry run)",
        "   1 users deleted",
        "   2 users anonymised",
        "✔ Dry run, nothing changed: 1 worlds deleted, 3 rooms deleted, "
        "15 messages deleted, 2 attendees deleted, 1 users deleted, 2 users anonymised",
    ]
    assert not JobRun.objects.exists()


def test_purge_removes_the_soft_deleted_and_keeps_what_others_see(data):
    output = purge()
    assert "-> Purging worlds" in output and "-> Purging users" in output
    assert output.splitlines()[-1] == (
        "✔ Purged: 1 worlds deleted, 3 rooms deleted, 15 messages deleted, "
        "2 attendees deleted, 1 users deleted, 2 users anonymised"
    )
    assert list(World.objects.values_list("pk", flat=True)) == ["live"]
    assert list(Room.objects.values_list("import_id", flat=True)) == ["hall"]
    # The hall keeps all 6 messages: bob's, carol's (anonymised), frank's (no sender).
    hall = data["hall"].messages
    assert hall.count() == 6 and ChatMessage.objects.count() == 6
    assert hall.filter(sender=data["bob"]).count() == 3
    assert hall.filter(sender__isnull=True).count() == 3  # carol's 2 + frank's 1

    carol = User.objects.get(pk=data["carol"].pk)
    assert carol.email == f"{carol.pk}@deleted" and carol.display_name == ""
    assert not carol.is_active and not carol.has_usable_password()
    assert not User.objects.filter(pk__in=[data["oscar"].pk, data["frank"].pk]).exists()
    dave = User.objects.get(pk=data["dave"].pk)
    assert dave.email == f"{dave.pk}@deleted" and not dave.is_active
    assert User.objects.filter(pk=data["bob"].pk, deleted_at__isnull=True).exists()
    assert TermsAcceptance.objects.count() == 0

    run = JobRun.objects.get()
    assert (run.job, run.trigger, run.outcome) == ("purge", "shell", "success")
    assert "1 worlds deleted" in run.result

    # Nothing left: a rerun changes nothing.
    after = snapshot()
    again = purge()
    assert snapshot() == after
    assert again.count("   nothing to purge") == 3


def test_a_purged_attendees_token_stays_refused(data):
    from apps.worlds import services as worlds

    live = data["live"]
    live.config = {
        "JWT_secrets": [{"issuer": "any", "audience": "stagehand", "secret": "s" * 40}]
    }
    live.save()
    token = worlds.generate_token(live, traits=[], uid="dave")
    purge()
    claims = worlds.verify_token(data["live"], token)
    with pytest.raises(worlds.TokenError, match="deleted"):
        worlds.get_or_create_attendee(data["live"], claims)
    assert User.objects.filter(world=data["live"], token_id="dave").count() == 1


def test_flags_choose_what_is_purged(data):
    output = purge("--rooms")
    assert output.splitlines()[0] == "-> Purging rooms"
    assert "-> Purging worlds" not in output
    assert World.objects.filter(pk="gone").exists()
    # Only soft-deleted rooms went: the gone world's lobby and the live annex.
    assert sorted(Room.objects.values_list("import_id", flat=True)) == ["hall", "stage"]
    purge("--users", "--worlds")
    assert not World.objects.filter(pk="gone").exists()


def test_tiny_batches_give_the_same_result(data):
    purge("--batch-size", "1")
    assert ChatMessage.objects.count() == 6
    assert list(World.objects.values_list("pk", flat=True)) == ["live"]


def test_an_interrupted_purge_leaves_consistent_data_and_a_rerun_finishes(data):
    class Interrupted(Exception):
        pass

    batches = []

    def stop_after_two(model: str, count: int) -> None:
        batches.append((model, count))
        if len(batches) == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        services.purge(batch_size=4, on_batch=stop_after_two)
    # Two whole batches of 4 messages went; the gone world is still whole otherwise.
    assert batches == [("connections.ChatMessage", 4)] * 2
    assert ChatMessage.objects.count() == 21 - 8
    assert World.objects.filter(pk="gone").exists()
    assert Room.objects.filter(world_id="gone").count() == 2
    assert not ChatMessage.objects.filter(room__isnull=True).exists()

    report = services.purge(batch_size=4)
    assert report.totals()["messages deleted"] == 15 - 8
    assert ChatMessage.objects.count() == 6
    assert not World.objects.filter(pk="gone").exists()


def test_json_and_the_purge_job(data):
    data_out = json.loads(purge("--dry-run", "--json", "--worlds"))
    assert data_out["dry_run"] is True
    assert data_out["counts"] == {
        "worlds": {
            "worlds deleted": 1,
            "rooms deleted": 2,
            "messages deleted": 11,
            "attendees deleted": 2,
        }
    }
    out = StringIO()
    call_command("jobs", "run", "purge", "users=false", stdout=out)
    assert "1 worlds deleted" in out.getvalue()
    assert User.objects.filter(pk=data["dave"].pk).exists()  # users=false
    with pytest.raises(CommandError, match="--batch-size"):
        purge("--batch-size", "0")
