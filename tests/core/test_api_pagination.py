"""Every list under /api/v1/ is paged with ``limit`` and ``offset`` and says ``count``."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apps.worlds import services as worlds

from ..ops.test_api_access import ENDPOINTS


@pytest.fixture
def staff(alice):
    client = APIClient()
    client.force_authenticate(alice)
    return client


@pytest.fixture
def five_worlds(db):
    for n in range(5):
        worlds.create_world(f"w{n}", f"World {n}", f"w{n}.example.org")


def test_a_page_has_count_links_and_results(staff, five_worlds):
    body = staff.get("/api/v1/worlds/", {"limit": 2, "offset": 2}).json()
    assert body["count"] == 5
    assert [w["id"] for w in body["results"]] == ["w2", "w3"]
    assert body["next"].endswith("/api/v1/worlds/?limit=2&offset=4")
    assert body["previous"].endswith("/api/v1/worlds/?limit=2")
    last = staff.get(body["next"]).json()
    assert [w["id"] for w in last["results"]] == ["w4"] and last["next"] is None


def test_the_default_page_is_twenty(staff, db):
    for n in range(21):
        worlds.create_world(f"p{n:02}", f"P {n}", f"p{n}.example.org")
    body = staff.get("/api/v1/worlds/").json()
    assert body["count"] == 21 and len(body["results"]) == 20


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"limit": "0"}, "invalid_limit"),
        ({"limit": "1001"}, "invalid_limit"),
        ({"limit": "ten"}, "invalid_limit"),
        ({"limit": str(2**63)}, "invalid_limit"),
        ({"offset": "-1"}, "invalid_offset"),
        ({"offset": str(2**63)}, "invalid_offset"),
        ({"offset": "1e3"}, "invalid_offset"),
    ],
)
def test_a_bad_limit_or_offset_is_a_400_that_says_so(staff, db, query, code):
    response = staff.get("/api/v1/jobs/history/", query)
    assert response.status_code == 400
    assert response.json()["error"] == code
    assert "whole number" in response.json()["detail"]


def test_worlds_are_searchable(staff, five_worlds):
    worlds.create_world("harborconf", "Harbor Conference", "harbor.example.org")
    found = staff.get("/api/v1/worlds/", {"search": "HARBOR"}).json()
    assert found["count"] == 1 and found["results"][0]["id"] == "harborconf"
    assert staff.get("/api/v1/worlds/", {"search": "w3.example"}).json()["count"] == 1
    nul = staff.get("/api/v1/worlds/", {"search": "a\x00b"})
    assert nul.status_code == 400 and nul.json()["error"] == "world.bad_search"


LISTS = [
    "/api/v1/worlds/",
    "/api/v1/jobs/",
    "/api/v1/jobs/scheduled/",
    "/api/v1/jobs/history/",
    "/api/v1/backups/",
    "/api/v1/connections/",
    "/api/v1/search/",
]


def test_every_list_is_paged_in_the_schema(staff):
    """Each list operation (an array of results) documents limit, offset and count;
    the list above is checked against the schema, so a new list cannot be missed."""
    schema = staff.get("/api/schema/?format=json").json()
    paged = []
    for path, operations in schema["paths"].items():
        get = operations.get("get")
        if not get:
            continue
        content = get["responses"]["200"]["content"]["application/json"]["schema"]
        ref = content.get("$ref", "")
        component = schema["components"]["schemas"].get(ref.rsplit("/", 1)[-1], {})
        if content.get("type") == "array":
            paged.append(("unpaged", path))
        elif "results" in component.get("properties", {}):
            names = {p["name"] for p in get.get("parameters", [])}
            assert {"limit", "offset"} <= names, path
            assert "count" in component["properties"], path
            paged.append(("paged", path))
    assert sorted(paged) == sorted(("paged", p) for p in LISTS)
    assert {p for p, _ in ENDPOINTS} >= set(LISTS)
