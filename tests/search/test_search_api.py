import pytest
from rest_framework.test import APIClient

from apps.accounts.models import User
from tests.helpers import call


def test_staff_search_over_the_api(harbor_search, api):
    call("search", "index")
    response = api.get("/api/v1/search/", {"q": "grace", "model": "attendees"})
    assert response.status_code == 200
    [hit] = response.json()["results"]
    assert hit["model"] == "attendee" and hit["title"] == "Grace Hopper"
    assert "**Grace**" in hit["snippet"]


def test_api_errors_have_the_common_shape(harbor_search, api):
    assert api.get("/api/v1/search/", {"q": "x"}).json()["error"] == "search.not_built"
    call("search", "index")
    response = api.get("/api/v1/search/", {"q": ""})
    assert response.status_code == 400
    assert response.json()["error"] == "search.bad_query"
    response = api.get("/api/v1/search/", {"q": "x", "model": "ships"})
    assert response.json()["error"] == "search.unknown_model"
    assert api.get("/api/v1/search/", {"q": "x", "limit": "0"}).status_code == 400


def test_attendees_may_not_search(harbor_search):
    client = APIClient()
    client.force_authenticate(User.objects.get(display_name="Grace Hopper"))
    assert client.get("/api/v1/search/", {"q": "x"}).status_code == 403


@pytest.mark.parametrize(
    "params",
    [
        "q=grace&world=%00",
        "q=gr%00ace",
        "q=grace&model=%00",
        "q=grace&world=" + "x" * 51,
    ],
)
def test_values_the_database_cannot_compare_are_a_400(harbor_search, api, params):
    call("search", "index")
    response = api.get(f"/api/v1/search/?{params}")
    assert response.status_code == 400, response.content
    assert response.json()["error"].startswith("search.")
