import jwt
import pytest
from django.core.management import CommandError
from rest_framework.test import APIClient

from apps.worlds import services
from tests.helpers import call, documented, run_json


def decode(world, token: str) -> dict:
    entry = world.config["JWT_secrets"][0]
    return jwt.decode(
        token,
        entry["secret"],
        algorithms=["HS256"],
        audience=entry["audience"],
        issuer=entry["issuer"],
    )


def test_prints_a_login_link_with_repeated_traits(world):
    out = call(
        "generate_token", "sample", "--trait", "moderator", "--trait", "speaker"
    ).strip()
    prefix = "https://sample.example.org/#token="
    assert out.startswith(prefix)
    claims = decode(world, out.removeprefix(prefix))
    assert claims["traits"] == ["moderator", "speaker"]
    assert set(claims) == {"iss", "aud", "iat", "exp", "uid", "traits"}
    assert claims["exp"] - claims["iat"] == 90 * 86400
    assert (
        services.verify_token(world, out.removeprefix(prefix))["uid"] == claims["uid"]
    )


def test_raw_days_and_uid(world):
    token = call(
        "generate_token", "sample", "--raw", "--days", "2", "--uid", "bob"
    ).strip()
    claims = decode(world, token)
    assert claims["uid"] == "bob"
    assert claims["traits"] == []
    assert claims["exp"] - claims["iat"] == 2 * 86400


def test_the_first_secret_signs(harbor):
    harbor.domain = "harbor.example.org"
    harbor.save()
    token = call("generate_token", "harborconf", "--raw").strip()
    claims = decode(harbor, token)
    assert (claims["iss"], claims["aud"]) == (
        "https://tickets.example.org/",
        "harborconf",
    )


def test_errors(world, harbor):
    with pytest.raises(CommandError, match="No world 'nope'; list_worlds"):
        call("generate_token", "nope").strip()
    with pytest.raises(CommandError, match="--days"):
        call("generate_token", "sample", "--days", "0").strip()
    with pytest.raises(CommandError, match="has no domain.*--raw"):
        call("generate_token", "harborconf").strip()
    world.config = {}
    world.save()
    with pytest.raises(CommandError, match="no JWT secret"):
        call("generate_token", "sample").strip()
    services.delete_world(harbor)
    with pytest.raises(CommandError, match="No world 'harborconf'"):
        call("generate_token", "harborconf", "--raw").strip()


def test_a_token_that_could_not_log_in_is_never_printed(world):
    with pytest.raises(CommandError, match="--days.*from 1 to 3650"):
        call("generate_token", "sample", "--days", "3000000").strip()
    with pytest.raises(CommandError, match="--days"):
        call("generate_token", "sample", "--days", "9" * 5000).strip()
    with pytest.raises(CommandError, match="uid is longer than 200 characters"):
        call("generate_token", "sample", "--uid", "u" * 201).strip()
    with pytest.raises(CommandError, match="uid contains a NUL character"):
        call("generate_token", "sample", "--uid", "a\x00b").strip()
    with pytest.raises(CommandError, match="trait .* contains a lone surrogate"):
        call("generate_token", "sample", "--trait", "\ud800").strip()
    token = call(
        "generate_token", "sample", "--raw", "--days", "3650", "--uid", "u" * 200
    ).strip()
    assert services.verify_token(world, token)["uid"] == "u" * 200


def test_json_prints_token_and_url_as_the_api_does(alice):
    world = services.create_world("harbor", "Harbor", "harbor.example.org")
    args = documented("docs/worlds.md", "generate_token harbor --trait speaker --json")
    data, err = run_json(*args)
    assert err == ""
    assert set(data) == {"token", "url"}
    assert data["url"] == services.token_url(world, data["token"])
    assert decode(world, data["token"])["traits"] == ["speaker"]
    api = APIClient()
    api.force_authenticate(alice)
    answer = api.post("/api/v1/worlds/harbor/token/", {}, format="json").json()
    assert set(answer) == set(data)


def test_json_without_a_domain_gives_a_null_url(world):
    world.domain = ""
    world.save()
    data, _ = run_json("generate_token", "sample", "--json", "--uid", "u1")
    assert data["url"] is None
    assert decode(world, data["token"])["uid"] == "u1"


def test_json_and_raw_exclude_each_other_and_errors_stay(world):
    with pytest.raises(CommandError, match="not allowed with argument"):
        run_json("generate_token", "sample", "--json", "--raw")
    with pytest.raises(CommandError, match="No world 'nope'"):
        run_json("generate_token", "nope", "--json")
