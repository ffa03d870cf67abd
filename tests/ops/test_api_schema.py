"""Schemathesis against /api/schema/: generated calls to every operation of the
management API, as staff, find no server error, and every answer (errors included)
is one the schema documents: its status code, content type and body. The views and
the schema are built from the same serializers; this keeps them from drifting."""

from __future__ import annotations

import json

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, transaction
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)


@pytest.fixture(autouse=True)
def _keep_the_test_transaction():
    """Calls go through Django's real WSGI handler, which closes the database
    connection after each request; the test client suspends that, and so do we, or
    the test's transaction would be closed under it (PostgreSQL)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def staff_token(alice) -> str:
    return Token.objects.create(user=alice).key


@pytest.fixture
def api_schema(staff_token, var_dir):
    return schemathesis.openapi.from_wsgi(
        "/api/schema/?format=json",
        get_wsgi_application(),
        headers={"Authorization": f"Token {staff_token}"},
    )


def load_schema() -> schemathesis.BaseSchema:
    """The schema /api/schema/ serves, built by drf-spectacular's generator.

    Built at import so that ``parametrize`` can make one test per operation (the
    fixture-based loader of schemathesis does not work with this pytest);
    ``test_the_served_schema_is_the_one_tested`` checks it is what the site serves.
    """
    raw = json.loads(json.dumps(SchemaGenerator().get_schema(public=True), default=str))
    loaded = schemathesis.openapi.from_dict(raw)
    loaded.app = get_wsgi_application()
    return loaded


schema = load_schema()


@pytest.mark.django_db
def test_the_schema_needs_staff(client):
    assert client.get("/api/schema/").status_code in (401, 403)


@pytest.mark.django_db
def test_the_served_schema_is_the_one_tested(api_schema):
    assert api_schema.raw_schema == schema.raw_schema
    assert "/api/v1/stats/" in api_schema.raw_schema["paths"]


@schemathesis.check
def no_server_error(ctx, response, case) -> None:
    """No 500, ever. A deliberate 503 (a service not there yet, such as a search
    index not built) is allowed only as the API's error shape with a code that
    says why."""
    if response.status_code < 500:
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    deliberate = (
        response.status_code == 503
        and isinstance(body, dict)
        and set(body) == {"error", "detail", "problems"}
        and body["error"] not in {"error", "server_error"}
    )
    if not deliberate:
        raise AssertionError(
            f"{case.method} {case.path} answered {response.status_code}: "
            f"{response.text[:300]}"
        )


@schema.parametrize()
@settings(
    max_examples=10,
    deadline=None,
    derandomize=True,  # the same calls in every run: CI is reproducible
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_api_answers_generated_calls_without_server_errors(case, staff_token):
    # A savepoint per call: see tests/ops/test_api_access.py's call().
    with transaction.atomic():
        response = case.call(headers={"Authorization": f"Token {staff_token}"})
    case.validate_response(
        response,
        checks=[
            no_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
