"""Every kind of finding, each produced by data broken on purpose.

Rows are orphaned with raw SQL inside the test's transaction: the foreign keys are
deferred (PostgreSQL and SQLite alike), so the parent can go and the check sees what a
partial restore leaves. Each test repairs its damage before the transaction ends,
because Django checks deferred constraints when a test finishes.
"""

import json
from io import StringIO

import boto3
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.db import connection
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from moto.server import ThreadedMotoServer

from apps.accounts.models import User
from apps.connections.models import ChatMessage
from apps.jobs import registry
from apps.ops.integrity import file_findings
from apps.worlds import services as worlds
from apps.worlds.models import Room, World
from tests.helpers import call, close_s3_connections


@pytest.fixture
def healthy(db, settings, tmp_path):
    """A database with one of everything the check looks at, all of it consistent."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    assert registry.get_job("log-test")
    world = worlds.create_world("expo", "Expo", "expo.example.org")
    room = Room.objects.create(world=world, import_id="lobby", name="Lobby")
    claims = worlds.verify_token(world, worlds.generate_token(world, [], uid="u1"))
    attendee = worlds.get_or_create_attendee(world, claims)
    attendee.avatar.save("face.png", ContentFile(b"png"), save=True)
    ChatMessage.objects.create(room=room, sender=attendee, text="hi")
    every_day = IntervalSchedule.objects.create(every=1, period="days")
    PeriodicTask.objects.create(
        name="nightly", task="stagehand.log-test", interval=every_day
    )
    PeriodicTask.objects.create(
        name="celery.backend_cleanup", task="celery.backend_cleanup", interval=every_day
    )
    return {"world": world, "room": room, "attendee": attendee, "interval": every_day}


def run(*args) -> tuple[str, int]:
    try:
        return call("check_integrity", *args), 0
    except CommandError as exc:
        return exc.printed.out, exc.returncode


def found() -> dict[str, dict]:
    output, code = run("--json")
    data = json.loads(output)
    assert data["ok"] is (code == 0)
    return {f["kind"]: f for f in data["findings"] if f["count"]}


def raw(sql: str, *params) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


@pytest.mark.django_db
def test_a_clean_database_reports_nothing(healthy):
    output, code = run()
    assert code == 0
    assert "No integrity problems found." in output
    assert found() == {}


@pytest.mark.django_db
def test_an_empty_database_reports_nothing(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "nothing-here")
    assert run()[1] == 0


@pytest.mark.django_db
def test_rooms_and_attendees_of_a_purged_world(healthy):
    ghost = worlds.create_world("ghost", "Ghost", "ghost.example.org")
    room = Room.objects.create(world=ghost, import_id="hall", name="Hall")
    claims = worlds.verify_token(ghost, worlds.generate_token(ghost, [], uid="g1"))
    attendee = worlds.get_or_create_attendee(ghost, claims)
    raw("DELETE FROM worlds_world WHERE id = %s", "ghost")

    findings = found()
    assert set(findings) == {"rooms_of_purged_worlds", "attendees_of_missing_worlds"}
    assert findings["rooms_of_purged_worlds"]["count"] == 1
    assert findings["rooms_of_purged_worlds"]["examples"] == [
        f"room {room.pk} 'Hall' of world 'ghost'"
    ]
    assert findings["attendees_of_missing_worlds"]["examples"] == [
        f"user {attendee.pk} (uid 'g1') of world 'ghost'"
    ]
    output, code = run()
    assert code == 1
    assert "rooms_of_purged_worlds (first 1):" in output

    raw("DELETE FROM worlds_room WHERE world_id = %s", "ghost")
    raw("DELETE FROM accounts_user WHERE world_id = %s", "ghost")
    assert found() == {}


@pytest.mark.django_db
def test_messages_in_a_missing_room(healthy):
    room = Room.objects.create(world=healthy["world"], import_id="gone", name="Gone")
    for text in ("a", "b", "c"):
        ChatMessage.objects.create(room=room, sender=healthy["attendee"], text=text)
    raw("DELETE FROM worlds_room WHERE id = %s", room.pk)

    findings = found()
    assert set(findings) == {"messages_in_missing_rooms"}
    assert findings["messages_in_missing_rooms"]["count"] == 3

    raw("DELETE FROM connections_chatmessage WHERE room_id = %s", room.pk)


@pytest.mark.django_db
def test_unreferenced_and_missing_files(healthy):
    default_storage.save("avatars/left-behind.png", ContentFile(b"old"))
    default_storage.save("uploads/deep/also-left.txt", ContentFile(b"old"))
    other = User.objects.create_user("someone", "someone@example.org")
    User.objects.filter(pk=other.pk).update(avatar="avatars/never-restored.png")

    findings = found()
    assert set(findings) == {"unreferenced_files", "missing_files"}
    assert findings["unreferenced_files"]["examples"] == [
        "avatars/left-behind.png",
        "uploads/deep/also-left.txt",
    ]
    assert findings["missing_files"]["examples"] == [
        f"accounts.user {other.pk}.avatar -> avatars/never-restored.png"
    ]


@pytest.mark.django_db
def test_malformed_jwt_secrets(healthy):
    worlds.create_world("broken", "Broken", "broken.example.org")
    worlds.create_world("short", "Short", "short.example.org")
    World.objects.filter(pk="broken").update(config={"JWT_secrets": "not-a-list"})
    World.objects.filter(pk="short").update(
        config={"JWT_secrets": [{"issuer": "any", "audience": "x", "secret": "tiny"}]}
    )

    findings = found()
    assert set(findings) == {"malformed_jwt_secrets"}
    assert findings["malformed_jwt_secrets"]["count"] == 2
    examples = findings["malformed_jwt_secrets"]["examples"]
    assert examples[0].startswith("world 'broken': config.JWT_secrets must be a list")
    assert examples[1].startswith("world 'short': config.JWT_secrets[0].secret is 4")


@pytest.mark.django_db
def test_periodic_tasks_of_unknown_jobs(healthy):
    PeriodicTask.objects.create(
        name="retired", task="stagehand.retired-job", interval=healthy["interval"]
    )
    findings = found()
    assert set(findings) == {"unknown_periodic_tasks"}
    assert findings["unknown_periodic_tasks"]["examples"] == [
        "periodic task 'retired' runs unknown 'stagehand.retired-job'"
    ]


@pytest.mark.django_db
def test_periodic_tasks_whose_job_cannot_take_their_arguments(healthy):
    for name, task, kwargs in (
        ("typo", "stagehand.log-test", '{"nosuch": 1}'),
        ("bool", "stagehand.connections-drop", '{"interval_ms": true}'),
        ("broken", "stagehand.log-test", "not json"),
        ("fine", "stagehand.log-test", '{"message": "hi"}'),
    ):
        PeriodicTask.objects.create(
            name=name, task=task, kwargs=kwargs, interval=healthy["interval"]
        )
    findings = found()
    assert set(findings) == {"unrunnable_periodic_tasks"}
    assert findings["unrunnable_periodic_tasks"]["count"] == 3
    assert findings["unrunnable_periodic_tasks"]["examples"] == [
        "periodic task 'typo': got an unexpected keyword argument 'nosuch'; "
        "log-test takes (message: str = 'log-test')",
        "periodic task 'bool': interval_ms=true is not int | str; connections-drop "
        "takes (*labels: str, interval_ms: int | str = 0, spread_ms: int | str | None "
        "= None)",
        "periodic task 'broken': its args or kwargs are not a JSON list / object",
    ]


@pytest.mark.django_db
def test_the_check_changes_nothing(healthy):
    default_storage.save("avatars/left-behind.png", ContentFile(b"old"))
    World.objects.filter(pk="expo").update(config={"JWT_secrets": 3})
    before = (
        list(World.objects.values()),
        list(PeriodicTask.objects.values("name", "task")),
        sorted(default_storage.listdir("avatars")[1]),
    )
    assert run()[1] == 1
    after = (
        list(World.objects.values()),
        list(PeriodicTask.objects.values("name", "task")),
        sorted(default_storage.listdir("avatars")[1]),
    )
    assert after == before


@pytest.fixture
def s3_media(settings):
    """The default storage on S3 (a moto server on a free port), under media/."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    credentials = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", **credentials
    )
    client.create_bucket(Bucket="stagehand-test")
    client.close()
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": "stagehand-test",
                "endpoint_url": endpoint,
                "region_name": "us-east-1",
                "access_key": "test",
                "secret_key": "test",
                "location": "media",
                "file_overwrite": False,
            },
        },
    }
    yield
    close_s3_connections()
    server.stop()


@pytest.mark.django_db
def test_file_checks_on_s3(s3_media):
    kept = User.objects.create_user("kept", "kept@example.org")
    kept.avatar.save("kept.png", ContentFile(b"png"), save=True)
    assert default_storage.exists(kept.avatar.name)
    assert "/stagehand-test/media/avatars/kept" in kept.avatar.url  # really on S3
    default_storage.save("avatars/deep/stray.png", ContentFile(b"old"))
    lost = User.objects.create_user("lost", "lost@example.org")
    User.objects.filter(pk=lost.pk).update(avatar="avatars/lost.png")

    unreferenced, missing = file_findings()
    assert unreferenced.examples == ["avatars/deep/stray.png"]
    assert missing.examples == [f"accounts.user {lost.pk}.avatar -> avatars/lost.png"]


@pytest.mark.django_db
def test_the_summary_counts_in_the_right_number(healthy):
    PeriodicTask.objects.create(
        name="retired", task="stagehand.retired-job", interval=healthy["interval"]
    )
    with pytest.raises(CommandError, match=r"^1 problem of 1 kind found; nothing"):
        call_command("check_integrity", stdout=StringIO())
    PeriodicTask.objects.create(
        name="typo",
        task="stagehand.log-test",
        kwargs='{"x": 1}',
        interval=healthy["interval"],
    )
    PeriodicTask.objects.create(
        name="gone", task="stagehand.gone", interval=healthy["interval"]
    )
    with pytest.raises(CommandError, match=r"^3 problems of 2 kinds found; nothing"):
        call_command("check_integrity", stdout=StringIO())
