"""The admin's operations page, through Django's test client."""

from __future__ import annotations

import hashlib
import json

import pytest
from channels.layers import get_channel_layer
from django.core.files.base import ContentFile
from django.core.files.storage import storages

from apps.connections.registry import get_registry
from apps.jobs.models import JobRun
from tests.ops.helpers import connect, receive


@pytest.fixture
def staff_client(client, alice):
    client.force_login(alice)
    return client


def test_the_admin_index_links_to_the_operations_page(staff_client):
    page = staff_client.get("/admin/").content.decode()
    assert 'href="/admin/operations/"' in page


def test_the_page_shows_components_connections_and_job_runs(staff_client, var_dir):
    JobRun.objects.create(job="cache_flush", trigger="shell", outcome="success")
    response = staff_client.get("/admin/operations/")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-component="database"' in page
    assert 'data-component="workers"' in page
    assert "Recent job runs" in page and "cache_flush" in page


def test_anonymous_and_non_staff_are_sent_to_the_login(client, django_user_model):
    response = client.get("/admin/operations/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    bob = django_user_model.objects.create_user("bob", password="x")
    client.force_login(bob)
    response = client.post("/admin/operations/", {"action": "drop", "label": "x"})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_buttons_say_that_connections_need_redis(staff_client, settings, var_dir):
    settings.REDIS_URL = ""
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    }
    page = staff_client.get("/admin/operations/").content.decode()
    assert "set REDIS_URL" in page
    response = staff_client.post(
        "/admin/operations/", {"action": "reload", "label": "abc.test"}, follow=True
    )
    assert "set REDIS_URL" in response.content.decode()


def test_a_bad_action_is_refused_with_a_message(staff_client, var_dir):
    response = staff_client.post(
        "/admin/operations/",
        {"action": "reload", "label": "abc.test", "interval": "-5"},
        follow=True,
    )
    assert "interval of 0 or more ms" in response.content.decode()


@pytest.mark.redis
def test_force_reload_reaches_exactly_the_label_of_the_row(staff_client, var_dir):
    layer = get_channel_layer()
    registry = get_registry()
    registry.clear()
    try:
        ours = connect(layer, "abc*.test")
        other = connect(layer, "abcdef.test")
        page = staff_client.get("/admin/operations/").content.decode()
        assert 'data-label="abc*.test"' in page and 'data-label="abcdef.test"' in page

        response = staff_client.post(
            "/admin/operations/",
            {"action": "reload", "label": "abc*.test", "interval": "0"},
            follow=True,
        )
        assert "Reloaded 1 connection (labels: abc*.test)" in (
            response.content.decode()
        )
        assert receive(layer, ours)["type"] == "connections.reload"
        assert registry.counts() == {"abcdef.test": 1}
        # The other label's connection got nothing: a drop for it arrives first.
        staff_client.post(
            "/admin/operations/", {"action": "drop", "label": "abcdef.test"}
        )
        assert receive(layer, other)["type"] == "connections.drop"
    finally:
        registry.clear()


def test_the_page_lists_the_latest_backups_newest_first(staff_client, var_dir):
    storage = storages["backups"]
    for stamp in ("20261123030000", "20261124030000"):
        storage.save(f"backup/postgresql-backup-{stamp}.dump", ContentFile(b"x" * 2048))
    page = staff_client.get("/admin/operations/").content.decode()
    assert "Latest backups" in page
    newer = page.index("postgresql-backup-20261124030000.dump")
    older = page.index("postgresql-backup-20261123030000.dump")
    assert newer < older
    # Dumps without their metadata: shown as not restorable.
    assert page.count("incomplete: it has no metadata file") == 2


def test_the_page_shows_verification_and_the_newest_verified_backup(
    staff_client, var_dir
):
    storage = storages["backups"]
    for stamp, ok in (("20261123030000", True), ("20261124030000", False)):
        name = f"backup/sqlite-backup-{stamp}.sqlite3"
        storage.save(name, ContentFile(b"x"))
        metadata = {
            "engine": "sqlite",
            "size": 1,
            "sha256": hashlib.sha256(b"x").hexdigest(),
        }
        storage.save(f"{name}.json", ContentFile(json.dumps(metadata)))
        record = {"ok": ok, "reason": "" if ok else "row counts differ"}
        storage.save(f"{name}.verified.json", ContentFile(json.dumps(record)))
    page = staff_client.get("/admin/operations/").content.decode()
    assert "<th>Verified</th>" in page
    assert "failed: row counts differ" in page
    assert "Newest verified backup:" in page
    assert "(sqlite-backup-20261123030000.sqlite3)" in page


def test_the_page_says_when_there_is_no_backup(staff_client, var_dir):
    page = staff_client.get("/admin/operations/").content.decode()
    assert "No backup yet" in page


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)  # the job is sent when its run commits
def test_a_paced_send_goes_to_the_workers_as_a_job(staff_client, var_dir, settings):
    # A broker as far as the page can tell; Celery stays eager in the tests, so the
    # "worker" that runs the job is this process (real workers: test_live.py).
    settings.STAGEHAND_HAS_BROKER = True
    layer = get_channel_layer()
    registry = get_registry()
    registry.clear()
    try:
        ours = connect(layer, "abc.test")
        response = staff_client.post(
            "/admin/operations/",
            {"action": "reload", "label": "abc.test", "interval": "5"},
            follow=True,
        )
        run = JobRun.objects.get()
        assert (run.job, run.trigger, run.args, run.kwargs) == (
            "connections-reload",
            "admin",
            ["abc.test"],
            {"interval_ms": 5},
        )
        assert (
            "Force reload of abc.test, one connection every 5 ms, sent to the workers "
            f"as job run #{run.pk}"
        ) in response.content.decode()
        assert run.outcome == "success", run.error
        assert run.result == "Reloaded 1 connection (labels: abc.test)"
        assert receive(layer, ours)["type"] == "connections.reload"
    finally:
        registry.clear()
