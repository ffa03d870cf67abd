"""purge on real data: what goes, what stays, dry run, batches, interruption, rerun."""

import json
import re
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth.models import Group, Permission
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.db import connection, models
from django.db.models.signals import post_delete
from django.utils import timezone
from rest_framework.authtoken.models import Token

from apps.accounts.models import Terms, TermsAcceptance, User
from apps.connections.models import ChatMessage
from apps.core import deletion
from apps.jobs.models import JobRun
from apps.search import services as search
from apps.search.models import Generation
from apps.worlds import services
from apps.worlds.models import Room, World
from tests.helpers import call

NOW = timezone.now()


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
    output = call("purge", "--dry-run")
    assert snapshot() == before
    assert output.splitlines() == [
        "-> Purging worlds (dry run)",
        "   1 world deleted",
        "   2 rooms deleted",
        "   11 messages deleted",
        "   2 attendees deleted",
        "-> Purging rooms (dry run)",
        "   1 room deleted",
        "   4 messages deleted",
        "-> Purging users (dry run)",
        "   1 user deleted",
        "   2 users anonymised",
        "✔ Dry run, nothing changed: 1 world deleted, 3 rooms deleted, "
        "15 messages deleted, 2 attendees deleted, 1 user deleted, 2 users anonymised",
    ]
    assert not JobRun.objects.exists()


def test_purge_removes_the_soft_deleted_and_keeps_what_others_see(data):
    output = call("purge")
    assert "-> Purging worlds" in output and "-> Purging users" in output
    # Off a terminal each section's progress is one line: rows against the total
    # a dry run counted (1 world + 2 rooms + 11 messages + 2 attendees), and time.
    rows = [line for line in output.splitlines() if line.startswith("   rows: ")]
    assert re.match(r"   rows: 16 of 16 in [\d.]+ m?s", rows[0]), rows
    assert len(rows) == 3
    assert output.splitlines()[-1] == (
        "✔ Purged: 1 world deleted, 3 rooms deleted, 15 messages deleted, "
        "2 attendees deleted, 1 user deleted, 2 users anonymised"
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
    assert "1 world deleted" in run.result

    # Nothing left: a rerun changes nothing.
    after = snapshot()
    again = call("purge")
    assert snapshot() == after
    assert again.count("   nothing to purge") == 3


def test_a_purged_attendees_token_stays_refused(data):
    worlds = services
    live = data["live"]
    live.config = {
        "JWT_secrets": [{"issuer": "any", "audience": "stagehand", "secret": "s" * 40}]
    }
    live.save()
    token = worlds.generate_token(live, traits=[], uid="dave")
    call("purge")
    claims = worlds.verify_token(data["live"], token)
    with pytest.raises(worlds.TokenError, match="deleted"):
        worlds.get_or_create_attendee(data["live"], claims)
    assert User.objects.filter(world=data["live"], token_id="dave").count() == 1


def test_flags_choose_what_is_purged(data):
    output = call("purge", "--rooms")
    assert output.splitlines()[0] == "-> Purging rooms"
    assert "-> Purging worlds" not in output
    assert World.objects.filter(pk="gone").exists()
    # Only soft-deleted rooms went: the gone world's lobby and the live annex.
    assert sorted(Room.objects.values_list("import_id", flat=True)) == ["hall", "stage"]
    call("purge", "--users", "--worlds")
    assert not World.objects.filter(pk="gone").exists()


def test_tiny_batches_give_the_same_result(data):
    call("purge", "--batch-size", "1")
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
    data_out = json.loads(call("purge", "--dry-run", "--json", "--worlds"))
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
    assert "1 world deleted" in out.getvalue()
    assert User.objects.filter(pk=data["dave"].pk).exists()  # users=false
    with pytest.raises(CommandError, match="--batch-size"):
        call("purge", "--batch-size", "0")


def test_delete_world_counts_what_purge_dry_run_counts(data):
    # delete_world --dry-run and the API's dry_run count messages as the purge does.
    gone = World.objects.get(pk="gone")
    dry = json.loads(call("purge", "--dry-run", "--json", "--worlds"))["counts"][
        "worlds"
    ]
    assert services.deletion_counts(gone) == {
        what.removesuffix(" deleted"): count for what, count in dry.items()
    }
    assert services.deletion_counts(gone)["messages"] == 11


# Set-based batches: every table that points at a purged row
# ------------------------------------------------------------------------------

# What a purge does to each table pointing at the rows it deletes, as the foreign
# keys' on_delete say. A new foreign key to a world, room or user changes this:
# check that test_every_dependant_of_a_purged_attendee_is_handled creates a row
# of it, then add it here.
USER_DEPENDANTS = {
    ("accounts.TermsAcceptance", "user", "deleted"),
    ("accounts.User_groups", "user", "deleted"),
    ("accounts.User_user_permissions", "user", "deleted"),
    ("admin.LogEntry", "user", "deleted"),
    ("authtoken.Token", "user", "deleted"),
    ("connections.ChatMessage", "sender", "set to None"),
}
ROOM_DEPENDANTS = {("connections.ChatMessage", "room", "deleted")}
WORLD_DEPENDANTS = {
    ("accounts.User", "world", "deleted"),
    ("worlds.Room", "world", "deleted"),
    *USER_DEPENDANTS,
    *ROOM_DEPENDANTS,
}


def test_every_relation_to_a_purged_model_is_known_and_set_based():
    # deletion_plan raises NeedsCollector for what it cannot do set-based (PROTECT,
    # RESTRICT, delete receivers other than the search index's, …): the purge would
    # still be right, through Django's collector, but slow again.
    plans = {model: deletion.deletion_plan(model) for model in (World, Room, User)}
    assert set(plans[User].relations()) == USER_DEPENDANTS
    assert set(plans[Room].relations()) == ROOM_DEPENDANTS
    assert set(plans[World].relations()) == WORLD_DEPENDANTS
    assert deletion.deletion_plan(ChatMessage).simple  # one DELETE per batch


@pytest.fixture
def erin_everywhere(data):
    """Erin, an attendee of the soft-deleted world, with a row in every table that
    points at users, and bob (alive) with the same, which must all stay."""
    erin = User.objects.get(world_id="gone", token_id="erin")
    bob = data["bob"]
    crew = Group.objects.create(name="crew")
    permission = Permission.objects.get(codename="view_room")
    terms = Terms.objects.get(slug="tos")
    TermsAcceptance.objects.create(user=bob, terms=terms)
    say(data["hall"], erin, 2)  # erin also spoke in the live world
    for user in (erin, bob):
        Token.objects.create(user=user)
        LogEntry.objects.create(
            user=user, object_repr="x", action_flag=ADDITION, change_message="[]"
        )
        user.groups.add(crew)
        user.user_permissions.add(permission)
        user.avatar.save(f"{user.token_id}.png", ContentFile(b"png"), save=True)
    return {**data, "erin": erin, "bob": bob}


def test_every_dependant_of_a_purged_attendee_is_handled(
    erin_everywhere, django_capture_on_commit_callbacks
):
    erin, bob = erin_everywhere["erin"], erin_everywhere["bob"]
    erin_avatar, bob_avatar = erin.avatar.name, bob.avatar.name
    through = {
        "accounts.TermsAcceptance": TermsAcceptance.objects,
        "accounts.User_groups": User.groups.through.objects,
        "accounts.User_user_permissions": User.user_permissions.through.objects,
        "admin.LogEntry": LogEntry.objects,
        "authtoken.Token": Token.objects,
        "connections.ChatMessage": ChatMessage.objects,
    }
    fk = {label: name for label, name, _ in USER_DEPENDANTS}
    assert set(through) == set(fk)  # one row of each kind below
    for label, rows in through.items():
        assert rows.filter(**{fk[label]: erin}).exists(), label
        assert rows.filter(**{fk[label]: bob}).exists(), label

    with django_capture_on_commit_callbacks(execute=True):
        call("purge", "--worlds")

    assert not User.objects.filter(pk=erin.pk).exists()
    for label, rows in through.items():
        assert not rows.filter(**{f"{fk[label]}_id": erin.pk}).exists(), label
        assert rows.filter(**{fk[label]: bob}).exists(), label
    # SET_NULL: what erin said in the live world stays, without a sender.
    hall = erin_everywhere["hall"].messages
    assert hall.filter(sender__isnull=True).count() == 1 + 2  # frank's and erin's
    assert not default_storage.exists(erin_avatar)
    assert default_storage.exists(bob_avatar)


def test_a_file_that_cannot_be_deleted_is_logged_and_the_others_go(
    erin_everywhere, django_capture_on_commit_callbacks, caplog
):
    erin, frank = erin_everywhere["erin"], erin_everywhere["frank"]
    frank.avatar.save("frank.png", ContentFile(b"png"), save=True)
    # erin's avatar is a folder with a file in it: the storage cannot delete it.
    stuck = Path(default_storage.path(erin.avatar.name))
    stuck.unlink()
    stuck.mkdir()
    (stuck / "inside").write_bytes(b"x")

    with django_capture_on_commit_callbacks(execute=True):
        call("purge", "--worlds")

    assert not User.objects.filter(pk__in=[erin.pk, frank.pk]).exists()
    assert not default_storage.exists(frank.avatar.name)
    assert f"could not delete file {erin.avatar.name}" in caplog.text


def documents(model: str) -> int:
    """How many documents the active index generation of ``model`` holds."""
    table = Generation.objects.get(model=model, state="active").table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {connection.ops.quote_name(table)}")
        return cursor.fetchone()[0]


def test_purged_rows_leave_the_search_index(data, django_capture_on_commit_callbacks):
    def found(text: str) -> list[str]:
        return [hit.model for hit in search.query(text)]

    Room.objects.filter(world_id="gone", import_id="stage").update(name="Gonestage")
    call_command("search", "index", stdout=StringIO())
    # Hidden while their world is soft-deleted, but the documents are there:
    # bob, erin and frank; the hall and the stage.
    assert found("erin") == found("gonestage") == []
    assert (documents("attendees"), documents("rooms")) == (3, 2)

    with django_capture_on_commit_callbacks(execute=True):
        call("purge", "--worlds")
    # With the world gone, a document left behind could be found again.
    assert found("erin") == found("frank") == found("gonestage") == []
    assert found("bob") == ["attendee"]
    assert (documents("attendees"), documents("rooms")) == (1, 1)


def test_a_dependant_with_its_own_delete_receiver_goes_through_the_collector(
    erin_everywhere,
):
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance.user_id)

    post_delete.connect(receiver, sender=TermsAcceptance, dispatch_uid="test-purge")
    try:
        with pytest.raises(deletion.NeedsCollector, match="TermsAcceptance"):
            deletion.deletion_plan(User)
        call("purge", "--worlds")
    finally:
        post_delete.disconnect(sender=TermsAcceptance, dispatch_uid="test-purge")
    assert seen == [erin_everywhere["erin"].pk]  # the receiver was not skipped
    assert not User.objects.filter(world_id="gone").exists()
    assert TermsAcceptance.objects.filter(user=erin_everywhere["bob"]).exists()


def test_on_delete_values_are_read_from_the_foreign_key():
    def fk(on_delete, **kwargs):
        return models.ForeignKey(User, on_delete=on_delete, **kwargs)

    assert deletion.set_value(fk(models.SET_NULL, null=True)) == (True, None)
    assert deletion.set_value(fk(models.SET_DEFAULT, default=7)) == (True, 7)
    assert deletion.set_value(fk(models.SET(3))) == (True, 3)
    assert deletion.set_value(fk(models.PROTECT)) == (False, None)
    assert deletion.set_value(fk(models.CASCADE)) == (False, None)


def test_an_attendee_batch_is_all_or_nothing(erin_everywhere):
    class Interrupted(Exception):
        pass

    def interrupt_attendees(sender, ids, **kwargs):
        raise Interrupted  # the last step of an attendee batch

    deletion.rows_deleted.connect(
        interrupt_attendees, sender=User, dispatch_uid="test-interrupt"
    )
    try:
        with pytest.raises(Interrupted):
            services.purge(rooms=False, users=False)
    finally:
        deletion.rows_deleted.disconnect(sender=User, dispatch_uid="test-interrupt")
    # The messages and rooms of the world went in their own batches; the attendee
    # batch rolled back whole: erin is there with everything that points at her.
    erin = erin_everywhere["erin"]
    assert not Room.objects.filter(world_id="gone").exists()
    assert User.objects.filter(world_id="gone").count() == 2
    assert TermsAcceptance.objects.filter(user=erin).exists()
    assert erin.groups.exists() and erin.user_permissions.exists()
    assert ChatMessage.objects.filter(sender=erin).count() == 2

    report = services.purge(rooms=False, users=False)
    assert report.counts["worlds"]["attendees deleted"] == 2
    assert not World.objects.filter(pk="gone").exists()
    assert ChatMessage.objects.filter(sender__isnull=True).count() == 3
