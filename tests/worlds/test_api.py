"""/api/v1/worlds/: staff only, token authentication, no secrets in list/detail."""

import json

import jwt
import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.accounts.models import User
from apps.worlds import services
from apps.worlds.models import World


def secrets_of(*worlds) -> list[str]:
    return [e["secret"] for w in worlds for e in w.config["JWT_secrets"]]


def test_needs_staff_token(db, world):
    assert APIClient().get("/api/v1/worlds/").status_code == 401
    bob = User.objects.create_user("bob", password="pw-123456789")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=bob).key}")
    response = client.get("/api/v1/worlds/")
    assert response.status_code == 403
    assert response.json()["error"] == "permission_denied"


def test_list_and_detail_never_contain_secrets(api, world, harbor):
    response = api.get("/api/v1/worlds/")
    assert response.status_code == 200
    assert [w["id"] for w in response.json()["results"]] == ["harborconf", "sample"]
    detail = api.get("/api/v1/worlds/harborconf/")
    assert detail.status_code == 200
    body = detail.json()
    assert body["config"]["connection_limit"] == 3
    assert body["config"]["JWT_secrets"][0] == {
        "issuer": "https://tickets.example.org/",
        "audience": "harborconf",
    }
    assert [r["id"] for r in body["rooms"]] == ["welcome", "main-stage", "hallway"]
    text = response.content.decode() + detail.content.decode()
    text += api.get("/api/v1/worlds/sample/").content.decode()
    for secret in secrets_of(world, harbor):
        assert secret not in text


def test_unknown_and_deleted_worlds(api, world):
    response = api.get("/api/v1/worlds/nope/")
    assert response.status_code == 404
    assert response.json() == {
        "error": "world.unknown_world",
        "detail": "No world 'nope'.",
        "problems": [],
    }
    services.delete_world(world)
    assert api.get("/api/v1/worlds/sample/").status_code == 404
    assert api.get("/api/v1/worlds/").json()["results"] == []
    every = api.get("/api/v1/worlds/?all=1").json()["results"]
    assert [w["id"] for w in every] == ["sample"]


def test_create(api):
    response = api.post(
        "/api/v1/worlds/",
        {"id": "new", "title": "New", "domain": "new.example.org"},
        format="json",
    )
    assert response.status_code == 201
    world = World.objects.get(pk="new")
    assert secrets_of(world)[0] not in response.content.decode()
    again = api.post(
        "/api/v1/worlds/",
        {"id": "new", "title": "X", "domain": "x.example.org"},
        format="json",
    )
    assert again.status_code == 400
    assert again.json()["error"] == "world.invalid"
    assert "already exists" in again.json()["detail"]
    missing = api.post("/api/v1/worlds/", {"id": "x"}, format="json")
    assert missing.status_code == 400


def test_clone(api, harbor):
    body = {
        "id": "copy",
        "title": "Copy",
        "domain": "copy.example.org",
        "new_secrets": True,
    }
    response = api.post("/api/v1/worlds/harborconf/clone/", body, format="json")
    assert response.status_code == 201
    clone = World.objects.get(pk="copy")
    assert clone.rooms.count() == 3
    assert len(clone.config["JWT_secrets"]) == 1
    assert (
        api.post("/api/v1/worlds/nope/clone/", body, format="json").status_code == 404
    )


def test_export_import_round_trip(api, harbor):
    exported = api.get("/api/v1/worlds/harborconf/export/").json()
    assert exported == services.export_config(harbor)
    World.objects.all().delete()
    response = api.post("/api/v1/worlds/import/", exported, format="json")
    assert response.status_code == 201
    assert response.json()["rooms_created"] == 3
    assert services.export_config(World.objects.get(pk="harborconf")) == exported
    assert (
        api.post("/api/v1/worlds/import/", exported, format="json").status_code == 200
    )


def test_import_problems(api):
    response = api.post("/api/v1/worlds/import/", {"world": {"id": "X"}}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "world.invalid_config"
    assert "$.world.id" in response.json()["detail"]
    assert "$.world.title" in response.json()["detail"]
    assert not World.objects.exists()


def test_token(api, world):
    response = api.post(
        "/api/v1/worlds/sample/token/",
        {"traits": ["a", "b"], "days": 1, "uid": "u"},
        format="json",
    )
    assert response.status_code == 200
    token = response.json()["token"]
    assert response.json()["url"] == f"https://sample.example.org/#token={token}"
    entry = world.config["JWT_secrets"][0]
    claims = jwt.decode(
        token, entry["secret"], algorithms=["HS256"], audience="stagehand", issuer="any"
    )
    assert (claims["traits"], claims["uid"]) == (["a", "b"], "u")
    bad = api.post("/api/v1/worlds/sample/token/", {"days": 0}, format="json")
    assert bad.status_code == 400


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"days": 3_000_000}, "3650"),
        ({"days": 10**9}, "3650"),
        ({"uid": "u" * 300}, "200 characters"),
    ],
)
def test_token_that_could_not_log_in_is_refused(api, world, body, message):
    # generate_token's own rules: no token is issued that verify_token refuses.
    response = api.post("/api/v1/worlds/sample/token/", body, format="json")
    assert response.status_code == 400, response.content
    assert message in json.dumps(response.json())


def test_delete(api, world):
    dry = api.delete("/api/v1/worlds/sample/?dry_run=1")
    assert dry.json() == {
        "worlds": 1,
        "rooms": 0,
        "messages": 0,
        "attendees": 0,
        "dry_run": True,
    }
    assert services.get_world("sample")
    response = api.delete("/api/v1/worlds/sample/")
    assert response.status_code == 200
    assert response.json()["dry_run"] is False
    assert World.objects.get(pk="sample").deleted_at is not None
    assert api.delete("/api/v1/worlds/sample/").status_code == 404


def test_schema_builds(api, world):
    response = api.get("/api/schema/")
    assert response.status_code == 200
    assert b"/api/v1/worlds/{id}/clone/" in response.content


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"days": 10**9}, "days"),
        ({"days": 3_000_000}, "days"),
        ({"days": 2**63}, "days"),
        ({"uid": "u" * 201}, "uid"),
        ({"uid": "u\x00"}, "uid"),
        ({"traits": ["t" * 201]}, "traits"),
        ({"traits": ["t\x00"]}, "traits"),
    ],
)
def test_a_token_that_cannot_be_issued_or_used_is_a_400(api, world, body, field):
    response = api.post("/api/v1/worlds/sample/token/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["detail"]


def test_the_longest_token_values_are_issued(api, world):
    body = {"days": 3650, "uid": "u" * 200, "traits": ["t" * 200]}
    response = api.post("/api/v1/worlds/sample/token/", body, format="json")
    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": "x" * 301}, "title"),
        ({"title": "Harbor\x00"}, "title"),
        ({"id": "a" * 51}, "id"),
        ({"domain": "d" * 251}, "domain"),
    ],
)
def test_create_and_clone_refuse_values_the_columns_cannot_hold(
    api, world, body, field
):
    good = {"id": "fresh", "title": "Fresh", "domain": "fresh.example.org"}
    for url in ("/api/v1/worlds/", "/api/v1/worlds/sample/clone/"):
        response = api.post(url, {**good, **body}, format="json")
        assert response.status_code == 400, (url, response.content)
        assert field in response.json()["detail"]
    assert not World.objects.filter(pk="fresh").exists()


def hostile_config(example_config, where: str, value) -> dict:
    data = example_config
    if where == "title":
        data["world"]["title"] = value
    elif where == "locale":
        data["world"]["locale"] = value
    elif where == "room name":
        data["rooms"][0]["name"] = value
    elif where == "sorting_priority":
        data["rooms"][0]["sorting_priority"] = value
    elif where == "module config":
        data["rooms"][1]["modules"][0]["config"]["x"] = value
    return data


@pytest.mark.parametrize(
    ("where", "value", "path"),
    [
        ("title", "x" * 301, "$.world.title"),
        ("locale", "x" * 60, "$.world.locale"),
        ("room name", "x" * 301, "$.rooms[0].name"),
        ("sorting_priority", 2**40, "$.rooms[0].sorting_priority"),
        ("title", "Harbor\x00", "$.world.title"),
        ("module config", "a\x00b", "$.rooms[1].modules[0].config.x"),
        ("module config", "\ud800", "$.rooms[1].modules[0].config.x"),
    ],
)
def test_import_refuses_hostile_values_with_their_json_path(
    api, example_config, where, value, path
):
    data = hostile_config(example_config, where, value)
    # json.dumps writes a lone surrogate as its \\u escape, as a browser would.
    response = api.generic(
        "POST", "/api/v1/worlds/import/", json.dumps(data), "application/json"
    )
    assert response.status_code == 400, response.content
    assert path in response.json()["detail"]
    assert not World.objects.exists()


@pytest.mark.parametrize("depth", [65, 600, 5_000, 100_000])
def test_import_refuses_deep_nesting(api, depth):
    body = '{"world": {"id": "ok", "title": "T"}, "exhibitors": '
    body += "[" * depth + "]" * depth + "}"
    response = api.generic(
        "POST", "/api/v1/worlds/import/", body, content_type="application/json"
    )
    assert response.status_code == 400, response.content
    assert "nested more than 64 levels deep" in response.json()["detail"]
    assert not World.objects.exists()
