import json

import pytest
from django.test import RequestFactory
from rest_framework.test import APIClient

from apps.core.api import server_error


@pytest.mark.django_db
def test_anonymous_api_requests_get_the_error_shape(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code in (401, 403)
    body = response.json()
    assert set(body) == {"error", "detail", "problems"}
    assert body["error"] in {"not_authenticated", "permission_denied"}


@pytest.mark.django_db
def test_staff_can_read_the_openapi_schema(client, alice):
    client.force_login(alice)
    response = client.get(
        "/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json"
    )
    assert response.status_code == 200


@pytest.fixture
def staff(alice):
    client = APIClient()
    client.force_authenticate(alice)
    return client


def is_error_shape(body) -> bool:
    return (
        set(body) == {"error", "detail", "problems"}
        and isinstance(body["detail"], str)
        and all(set(p) == {"path", "message"} for p in body["problems"])
    )


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "post", "put", "delete"])
@pytest.mark.parametrize(
    "path", ["/api/v1/nosuch/", "/api/v1/worlds/x/nosuch/", "/api/nope", "/api/"]
)
def test_unknown_api_urls_are_json_404s_for_every_method(staff, method, path):
    response = getattr(staff, method)(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert is_error_shape(body) and body["error"] == "not_found"
    assert path in body["detail"]


@pytest.mark.django_db
def test_a_missing_slash_is_named(client):
    body = client.post("/api/v1/worlds").json()
    assert "Did you mean /api/v1/worlds/ (with the slash)?" in body["detail"]


@pytest.mark.django_db
def test_a_wrong_method_is_a_json_405(staff):
    response = staff.delete("/api/v1/stats/")
    assert response.status_code == 405
    body = response.json()
    assert is_error_shape(body) and body["error"] == "method_not_allowed"
    assert '"DELETE"' in body["detail"]


@pytest.mark.django_db
def test_invalid_fields_are_problems_by_json_path(staff):
    response = staff.post(
        "/api/v1/worlds/", {"id": "x", "title": ["no"]}, format="json"
    )
    assert response.status_code == 400
    body = response.json()
    assert is_error_shape(body) and body["error"] == "invalid"
    paths = {p["path"] for p in body["problems"]}
    assert paths == {"$.title", "$.domain"}
    assert "$.domain: This field is required." in body["detail"]


@pytest.mark.django_db
def test_nested_invalid_fields_have_their_index(staff):
    response = staff.post(
        "/api/v1/worlds/sample/token/", {"traits": ["ok", "x" * 201]}, format="json"
    )
    # No world 'sample' yet: 404 first, so make one.
    assert response.status_code == 404
    staff.post(
        "/api/v1/worlds/",
        {"id": "sample", "title": "Sample", "domain": "sample.example.org"},
        format="json",
    )
    response = staff.post(
        "/api/v1/worlds/sample/token/", {"traits": ["ok", "x" * 201]}, format="json"
    )
    assert response.status_code == 400
    [problem] = response.json()["problems"]
    assert problem["path"] == "$.traits[1]"


@pytest.mark.django_db
def test_import_problems_are_a_list(staff):
    response = staff.post(
        "/api/v1/worlds/import/", {"world": {"title": 5}}, format="json"
    )
    assert response.status_code == 400
    body = response.json()
    assert is_error_shape(body) and body["error"] == "world.invalid_config"
    paths = [p["path"] for p in body["problems"]]
    assert "$.world.id" in paths and "$.world.title" in paths
    assert "\n" not in body["detail"]


@pytest.mark.django_db
def test_body_values_no_database_can_store_are_problems(staff):
    response = staff.post(
        "/api/v1/jobs/run/",
        data=b'{"name": "log-test", "args": ["a\\u0000b"]}',
        content_type="application/json",
    )
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "parse_error"
    assert [p["path"] for p in body["problems"]] == ["$.args[0]"]


@pytest.mark.django_db
def test_a_body_too_large_is_a_json_413(staff, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = staff.post(
        "/api/v1/worlds/import/", {"world": {"title": "x" * 2000}}, format="json"
    )
    assert response.status_code == 413
    body = response.json()
    assert is_error_shape(body) and body["error"] == "too_large"
    assert "1000 bytes" in body["detail"]


@pytest.mark.django_db
def test_what_django_refuses_itself_is_json_under_api_only(client):
    refused = client.get("/api/v1/stats/", HTTP_HOST="elsewhere.example")
    assert refused.status_code == 400
    assert is_error_shape(refused.json()) and refused.json()["error"] == "bad_request"
    page = client.get("/admin/", HTTP_HOST="elsewhere.example")
    assert page.status_code == 400 and "json" not in page["Content-Type"]


def test_a_server_error_under_api_is_json():
    response = server_error(RequestFactory().get("/api/v1/stats/"))
    assert response.status_code == 500
    assert json.loads(response.content)["error"] == "server_error"
    assert "json" not in server_error(RequestFactory().get("/"))["Content-Type"]
