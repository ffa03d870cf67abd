import pytest
from rest_framework.test import APIClient

from apps.accounts.models import User
from apps.connections.models import ChatMessage

URL = "/api/v1/users/purge/"


@pytest.mark.django_db
def test_api_purge_dry_run_then_purge(api, expo):
    body = {"world": "expo", "uid": "cleo-uid", "dry_run": True}
    response = api.post(URL, body, format="json")
    assert response.status_code == 200
    data = response.json()
    assert data["dry_run"] is True
    items = {item["what"]: item["count"] for item in data["items"]}
    assert items["messages anonymised"] == 3
    assert User.objects.get(pk=expo.cleo.pk).deleted_at is None

    response = api.post(URL, {"world": "expo", "uid": "cleo-uid"}, format="json")
    assert response.status_code == 200
    assert response.json()["summary"].startswith("3 messages anonymised")
    assert User.objects.get(pk=expo.cleo.pk).deleted_at is not None
    assert ChatMessage.objects.filter(sender__isnull=True).count() == 3


@pytest.mark.django_db
def test_api_purge_errors_have_the_error_shape(api, expo):
    response = api.post(URL, {"user": "ghost@example.org"}, format="json")
    assert response.status_code == 404
    assert response.json()["error"] == "accounts.unknown_user"
    response = api.post(URL, {"user": "alice"}, format="json")
    assert response.status_code == 409
    assert "last active admin" in response.json()["detail"]
    response = api.post(URL, {"world": "expo"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "accounts.invalid_request"
    response = api.post(URL, {"user": "x", "dry_run": "maybe"}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"error", "detail", "problems"}


@pytest.mark.django_db
def test_api_purge_is_staff_only(expo, bob):
    client = APIClient()
    response = client.post(URL, {"world": "expo", "uid": "cleo-uid"}, format="json")
    assert response.status_code in (401, 403)
    client.force_authenticate(bob)
    response = client.post(URL, {"world": "expo", "uid": "cleo-uid"}, format="json")
    assert response.status_code == 403
    assert User.objects.get(pk=expo.cleo.pk).deleted_at is None
