"""The classic hostile values against every operation of the management API, as staff:
numbers at 2^31, 2^63 and 10^9, strings at their maximum length + 1, NUL, lone
surrogates, NaN, deep nesting. None may answer a server error.

The operations come from the OpenAPI schema the site serves, so an endpoint added later
is covered without touching this file (and one missing from the schema fails
``test_every_endpoint_is_in_the_schema``). Schemathesis (test_api_schema.py) generates
random calls; this sends the values that broke Stagehand before, every time.
"""

from __future__ import annotations

import json
from io import StringIO
from urllib.parse import quote

import pytest
from django.core.management import call_command
from django.db import transaction
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from tests.helpers import api_client

from .test_api_access import api_endpoints

DEEP = "__deep__"  # replaced by nesting no recursive parser survives
NAN = "__nan__"  # replaced by NaN, which json.dumps would write as valid JSON

NUMBERS = {
    "2^31": 2**31,
    "2^63": 2**63,
    "-2^63-1": -(2**63) - 1,
    "10^9": 10**9,
    "10^400": 10**400,
    "NaN": NAN,
}
TEXTS = {"NUL": "\x00", "NUL inside": "harbor\x00conf", "lone surrogate": "a\ud800"}
NESTING = {
    "nested 65 deep": json.loads("[" * 65 + "]" * 65),
    "nested 100,000 deep": DEEP,
}
# Query strings arrive as text: the same values, percent-encoded.
QUERY_VALUES = {
    "NUL": "%00",
    "invalid UTF-8 (a lone surrogate)": "%ED%A0%80",
    "2^31": str(2**31),
    "2^63": str(2**63),
    "10^9": str(10**9),
    "-2^63-1": str(-(2**63) - 1),
    "10,001 characters": "x" * 10_001,
}
PATH_VALUES = ("sample", "a" * 300, "%00", "%ED%A0%80")
# Valid values for the other fields, so that a hostile value gets past the required
# ones to the code behind. An operation without one is still called with the hostile
# values alone.
BASELINES = {
    ("/api/v1/jobs/run/", "post"): {"name": "log-test"},
    ("/api/v1/jobs/schedule/", "post"): {"name": "log-test", "cron": "0 3 * * *"},
    ("/api/v1/jobs/unschedule/", "post"): {"name": "log-test"},
    ("/api/v1/worlds/", "post"): {
        "id": "fresh",
        "title": "Fresh",
        "domain": "fresh.example.org",
    },
    ("/api/v1/worlds/{id}/clone/", "post"): {
        "id": "fresh",
        "title": "Fresh",
        "domain": "fresh.example.org",
    },
    ("/api/v1/worlds/{id}/token/", "post"): {"traits": ["a"], "uid": "u"},
    ("/api/v1/users/purge/", "post"): {"world": "sample", "uid": "u", "dry_run": True},
    ("/api/v1/connections/drop/", "post"): {"dry_run": True},
    ("/api/v1/connections/force_reload/", "post"): {"dry_run": True},
}
QUERY_BASELINES = {("/api/v1/search/", "get"): {"q": "harbor"}}


def load_operations() -> list[tuple[str, str, dict]]:
    raw = json.loads(json.dumps(SchemaGenerator().get_schema(public=True), default=str))
    components = raw.get("components", {}).get("schemas", {})
    operations = []
    for path, methods in raw["paths"].items():
        for method, operation in methods.items():
            operation = {**operation, "components": components}
            operations.append((path, method, operation))
    return operations


OPERATIONS = load_operations()


def body_properties(operation: dict) -> dict[str, dict]:
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema") or {}
    if "$ref" in schema:
        schema = operation["components"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema.get("properties", {})


def too_long(schema: dict) -> str:
    """A string one character over the field's maximum (or over any column's)."""
    return "x" * ((schema.get("maxLength") or 10_000) + 1)


def hostile_bodies(
    operation: dict, baseline: dict, values: dict
) -> list[tuple[str, object]]:
    """(description, body) for each value in each property, bare, in a list and in
    an object, alone and among valid values; every property at once; and the value
    as the whole body."""
    properties = body_properties(operation)
    bodies: list[tuple[str, object]] = []
    for name, value in values.items():
        bodies.append((f"body {name}", value))
        bodies.append((f"every property {name}", dict.fromkeys(properties, value)))
        for prop in properties:
            for shape, wrapped in (
                ("", value),
                (" in a list", [value]),
                (" in an object", {"k": value}),
            ):
                bodies.append((f"{prop}={name}{shape}", {prop: wrapped}))
                if baseline:
                    bodies.append(
                        (f"valid + {prop}={name}{shape}", {**baseline, prop: wrapped})
                    )
    return bodies


def long_bodies(operation: dict, baseline: dict) -> list[tuple[str, object]]:
    return [
        (f"{prop} at its maximum length + 1", {**baseline, prop: too_long(schema)})
        for prop, schema in body_properties(operation).items()
    ]


def encode(body: object) -> str:
    text = json.dumps(body)
    text = text.replace(json.dumps(DEEP), "[" * 100_000 + "]" * 100_000)
    return text.replace(json.dumps(NAN), "NaN")


def concrete(path: str, value: str = "sample") -> str:
    return path.replace("{id}", value)


@pytest.fixture
def staff(alice) -> APIClient:
    # A view's exception comes back as the 500 a browser would see, not raised here.
    return api_client(alice, raise_request_exception=False)


@pytest.fixture
def indexed_sample(sample):
    """The sample world for the paths with an id, and a search index built over it,
    so that each value reaches the code behind the checks (search answers 503
    without one)."""
    call_command("search", "index", stdout=StringIO())
    return sample


def call(client: APIClient, method: str, url: str, body: object = None):
    """One request in a savepoint that is rolled back: each value meets the same
    data (a DELETE with a hostile ``dry_run`` does delete)."""
    with transaction.atomic():
        if body is None:
            response = client.generic(method.upper(), url)
        else:
            response = client.generic(
                method.upper(), url, encode(body), content_type="application/json"
            )
        transaction.set_rollback(True)
    return response


def server_error(response) -> bool:
    """A 5xx other than a deliberate 503 in the API's error shape (a service that is
    not there, such as a search index not built yet)."""
    if response.status_code < 500:
        return False
    try:
        body = response.json()
    except ValueError:
        return True
    return not (
        response.status_code == 503
        and isinstance(body, dict)
        and set(body) == {"error", "detail", "problems"}
        and body["error"] not in {"error", "server_error"}
    )


def failures_of(client, method: str, path: str, calls) -> list[str]:
    failed = []
    for what, url, body in calls:
        response = call(client, method, url, body)
        if server_error(response):
            failed.append(
                f"{method.upper()} {path} with {what}: {response.status_code}"
            )
    return failed


def calls_for(path: str, operation: dict, bodies) -> list:
    calls = []
    url = concrete(path)
    has_body = "requestBody" in operation
    for what, body in bodies if has_body else []:
        calls.append((what, url, body))
    return calls


def query_calls(path: str, method: str, operation: dict) -> list:
    calls = []
    if "{id}" in path:
        calls += [(f"id={v[:20]}", concrete(path, v), None) for v in PATH_VALUES]
    baseline = QUERY_BASELINES.get((path, method), {})
    for parameter in operation.get("parameters", []):
        if parameter["in"] != "query":
            continue
        name = parameter["name"]
        others = "".join(
            f"&{quote(k)}={quote(v)}" for k, v in baseline.items() if k != name
        )
        for what, value in QUERY_VALUES.items():
            url = f"{concrete(path)}?{quote(name)}={value}"
            calls.append((f"?{name}={what}", url, None))
            if others:
                calls.append((f"valid + ?{name}={what}", url + others, None))
    return calls


IDS = [f"{method.upper()} {path}" for path, method, _ in OPERATIONS]


def test_every_endpoint_is_in_the_schema():
    def normal(path: str) -> str:
        return path.replace("{id}", "1")

    in_schema = {(normal(path), method) for path, method, _ in OPERATIONS}
    # HEAD is answered by GET.
    endpoints = {(path, m) for path, m in api_endpoints() if m != "head"}
    assert endpoints <= in_schema
    assert len(OPERATIONS) > 20


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS, ids=IDS)
def test_no_hostile_number_length_or_nesting_is_a_server_error(
    staff, indexed_sample, path, method, operation
):
    baseline = BASELINES.get((path, method), {})
    bodies = hostile_bodies(operation, baseline, {**NUMBERS, **NESTING})
    bodies += long_bodies(operation, {}) + long_bodies(operation, baseline)
    calls = calls_for(path, operation, bodies) + query_calls(path, method, operation)
    failed = failures_of(staff, method, path, calls)
    assert not failed, "\n".join(failed)


# NUL and lone surrogates are what PostgreSQL refuses (text and jsonb); SQLite stores
# them, so this must run where PostgreSQL is.
@pytest.mark.postgres
@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS, ids=IDS)
def test_no_nul_or_lone_surrogate_is_a_server_error_on_postgresql(
    staff, indexed_sample, path, method, operation
):
    baseline = BASELINES.get((path, method), {})
    bodies = hostile_bodies(operation, baseline, TEXTS) + long_bodies(
        operation, baseline
    )
    calls = calls_for(path, operation, bodies)
    calls += [c for c in query_calls(path, method, operation) if "%" in c[1]]
    failed = failures_of(staff, method, path, calls)
    assert not failed, "\n".join(failed)
