"""Schemathesis against /api/schema/: generated calls to every operation of the
management API, as staff, find no server error and no response off the schema."""

from __future__ import annotations

import json

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error


@pytest.fixture
def staff_token(alice) -> str:
    from rest_framework.authtoken.models import Token

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
    from drf_spectacular.generators import SchemaGenerator

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


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_api_answers_generated_calls_without_server_errors(case, staff_token):
    case.call_and_validate(
        headers={"Authorization": f"Token {staff_token}"},
        checks=[not_a_server_error],
    )
