"""Every endpoint under /api/v1/ refuses anonymous and non-staff callers.

The endpoints are found by walking the URL resolver, so an endpoint added later is
covered without touching this file.
"""

from __future__ import annotations

import re

import pytest
from django.db import transaction
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from rest_framework.views import APIView

from tests.helpers import api_client

API_PREFIX = "api/v1/"
METHODS = ("get", "post", "put", "patch", "delete")


def concrete(route: str) -> str:
    """Turn a route or regex (``<int:pk>/``, ``^(?P<pk>[^/.]+)/clone/$``) into a path."""
    route = re.sub(r"\(\?P<\w+>[^)]*\)", "1", route)
    route = re.sub(r"<(?:\w+:)?\w+>", "1", route)
    return route.replace("^", "").replace("$", "").replace("\\", "")


def walk(patterns, prefix: str = ""):
    for pattern in patterns:
        route = prefix + concrete(str(pattern.pattern))
        if isinstance(pattern, URLResolver):
            yield from walk(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            yield route, pattern


def api_endpoints() -> list[tuple[str, str]]:
    """Return (path, method) for every method of every view under /api/v1/."""
    endpoints = []
    for route, pattern in walk(get_resolver().url_patterns):
        if not route.startswith(API_PREFIX):
            continue
        view_class = getattr(pattern.callback, "cls", None)
        assert view_class is not None and issubclass(view_class, APIView), (
            f"/{route} is not a DRF view: it would escape the API's authentication"
        )
        actions = getattr(pattern.callback, "actions", None)
        methods = (
            list(actions) if actions else [m for m in METHODS if hasattr(view_class, m)]
        )
        endpoints += [("/" + route, method) for method in methods]
    return endpoints


ENDPOINTS = api_endpoints()


def test_the_walk_finds_the_api():
    paths = {path for path, _ in ENDPOINTS}
    assert "/api/v1/stats/" in paths
    assert ("/api/v1/stats/", "get") in ENDPOINTS
    # Every app's include() is walked, not just the first.
    assert len({p.split("/")[3] for p in paths}) >= 2


def call(client: APIClient, method: str, path: str):
    """One request in a savepoint of its own: DRF marks the innermost atomic block for
    rollback when a view that opted out of ATOMIC_REQUESTS answers an error, which
    under the test's transaction would be the test's own."""
    with transaction.atomic():
        return getattr(client, method)(path, {}, format="json")


@pytest.mark.django_db
@pytest.mark.parametrize(("path", "method"), ENDPOINTS)
def test_anonymous_callers_are_refused(path, method):
    response = call(APIClient(), method, path)
    assert response.status_code == 401, (path, method, response.content)
    assert response.json()["error"] == "not_authenticated"


@pytest.mark.parametrize(("path", "method"), ENDPOINTS)
def test_non_staff_callers_are_refused_with_a_token_or_a_session(bob, path, method):
    response = call(api_client(bob), method, path)
    assert response.status_code == 403, (path, method, response.content)
    assert response.json()["error"] == "permission_denied"

    with_session = APIClient(enforce_csrf_checks=True)
    with_session.force_login(bob)
    response = call(with_session, method, path)
    assert response.status_code == 403, (path, method, response.content)


def test_staff_callers_get_through(alice):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=alice)}")
    assert client.get("/api/v1/stats/").status_code == 200
