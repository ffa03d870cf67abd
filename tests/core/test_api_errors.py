import pytest


@pytest.mark.django_db
def test_anonymous_api_requests_get_the_error_shape(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code in (401, 403)
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] in {"not_authenticated", "permission_denied"}


@pytest.mark.django_db
def test_staff_can_read_the_openapi_schema(client, alice):
    client.force_login(alice)
    response = client.get(
        "/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json"
    )
    assert response.status_code == 200
