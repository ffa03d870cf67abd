"""/api/v1/backups/: staff only, list, create, restore with an explicit confirmation."""

from __future__ import annotations

import pytest

from apps.accounts.models import User

from .conftest import SQLITE_ALIAS, sqlite_execute, sqlite_rows

URL = "/api/v1/backups/"


# The views run outside the request transaction (restore must close connections), so
# a refused request would mark a test-wide transaction for rollback: no outer atomic.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def staff_client(client, alice):
    client.force_login(alice)
    return client


def test_only_staff_may_use_it(client):
    assert client.get(URL).status_code in (401, 403)
    bob = User.objects.create_user("bob", "bob@example.org", "pw")
    client.force_login(bob)
    response = client.post(
        URL, {"database": SQLITE_ALIAS}, content_type="application/json"
    )
    assert response.status_code == 403
    assert set(response.json()) == {"error", "detail", "problems"}


def test_create_list_and_restore_with_confirmation(staff_client, sqlite_db):
    before = sqlite_rows(sqlite_db)
    response = staff_client.post(
        URL, {"database": SQLITE_ALIAS}, content_type="application/json"
    )
    assert response.status_code == 201, response.content
    name = response.json()["name"]
    assert [b["name"] for b in staff_client.get(URL).json()["results"]] == [name]

    sqlite_execute(sqlite_db, "DELETE FROM note")
    restore = URL + "restore/"
    body = {"name": "latest", "database": SQLITE_ALIAS}
    response = staff_client.post(restore, body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "backups.confirmation_required"
    assert name in response.json()["detail"]
    assert sqlite_rows(sqlite_db) == []

    response = staff_client.post(
        restore, {**body, "dry_run": True}, content_type="application/json"
    )
    assert response.status_code == 200 and response.json()["dry_run"] is True
    assert sqlite_rows(sqlite_db) == []

    response = staff_client.post(
        restore, {**body, "confirm": name}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["backup"]["name"] == name
    assert sqlite_rows(sqlite_db) == before


def test_unknown_backup_is_a_404(staff_client, sqlite_db):
    response = staff_client.post(
        URL + "restore/",
        {"name": "sqlite-backup-20000101000000.sqlite3.gz", "database": SQLITE_ALIAS},
        content_type="application/json",
    )
    assert response.status_code == 404
    assert response.json()["error"] == "backups.not_found"


@pytest.mark.parametrize("endpoint", ["closed_endpoint", "hanging_endpoint"])
def test_storage_down_is_a_503_with_a_json_error(
    staff_client, sqlite_db, s3, settings, fast_s3_timeouts, request, endpoint
):
    settings.AWS_S3_ENDPOINT_URL = request.getfixturevalue(endpoint)
    settings.STORAGES = dict(settings.STORAGES)
    for response in (
        staff_client.get(URL),
        staff_client.post(
            URL, {"database": SQLITE_ALIAS}, content_type="application/json"
        ),
        staff_client.post(
            URL + "restore/",
            {"name": "latest", "database": SQLITE_ALIAS, "dry_run": True},
            content_type="application/json",
        ),
    ):
        assert response.status_code == 503, response.content
        body = response.json()
        assert body["error"] == "backups.storage_unavailable"
        assert settings.AWS_S3_ENDPOINT_URL in body["detail"]
