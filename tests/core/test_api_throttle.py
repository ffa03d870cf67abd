"""Calls that change something are throttled per user (API_THROTTLE_MUTATIONS);
reading never is, and the 429 has the API's error shape."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from apps.accounts.models import User

UNSCHEDULE = "/api/v1/jobs/unschedule/"


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def three_a_minute(settings):
    settings.REST_FRAMEWORK = {
        **django_settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"mutations": "3/minute"},
    }


def test_the_fourth_change_in_a_minute_is_a_429(alice, three_a_minute):
    staff = client_for(alice)
    body = {"name": "log-test"}
    for _ in range(3):
        assert staff.post(UNSCHEDULE, body, format="json").status_code == 404
    response = staff.post(UNSCHEDULE, body, format="json")
    assert response.status_code == 429
    assert set(response.json()) == {"error", "detail", "problems"}
    assert response.json()["error"] == "throttled"
    assert 0 < int(response["Retry-After"]) <= 60
    # Reading is not throttled, and another operator has a budget of their own.
    assert staff.get("/api/v1/jobs/").status_code == 200
    bea = User.objects.create_superuser("bea", "bea@example.org", "pw-123456789")
    assert client_for(bea).post(UNSCHEDULE, body, format="json").status_code == 404


def test_deleting_is_a_change_too(alice, three_a_minute):
    staff = client_for(alice)
    for _ in range(3):
        staff.delete("/api/v1/worlds/nope/")
    assert staff.delete("/api/v1/worlds/nope/").status_code == 429


def test_an_unreachable_cache_does_not_take_the_api_down(
    alice, three_a_minute, settings
):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",  # the discard port: nothing answers
        }
    }
    staff = client_for(alice)
    for _ in range(5):
        response = staff.post(UNSCHEDULE, {"name": "log-test"}, format="json")
        assert response.status_code == 404
