from io import StringIO

import jwt
import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from apps.worlds import services
from tests.scripting import documented, run_json


def run(*args) -> str:
    out = StringIO()
    call_command("generate_token", *args, stdout=out)
    return out.getvalue().strip()


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
    out = run("sample", "--trait", "moderator", "--trait", "speaker")
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
    token = run("sample", "--raw", "--days", "2", "--uid", "bob")
    claims = decode(world, token)
    assert claims["uid"] == "bob"
    assert claims["traits"] == []
    assert claims["exp"] - claims["iat"] == 2 * 86400


def test_the_first_secret_signs(harbor):
    harbor.domain = "harbor.example.org"
    harbor.save()
    token = run("harborconf", "--raw")
    claims = decode(harbor, token)
    assert (claims["iss"], claims["aud"]) == (
        "https://tickets.example.org/",
        "harborconf",
    )


def test_errors(world, harbor):
    with pytest.raises(CommandError, match="No world 'nope'; list_worlds"):
        run("nope")
    with pytest.raises(CommandError, match="--days"):
        run("sample", "--days", "0")
    with pytest.raises(CommandError, match="has no domain.*--raw"):
        run("harborconf")
    world.config = {}
    world.save()
    with pytest.raises(CommandError, match="no JWT secret"):
        run("sample")
    services.delete_world(harbor)
    with pytest.raises(CommandError, match="No world 'harborconf'"):
        run("harborconf", "--raw")


def test_a_token_that_could_not_log_in_is_never_printed(world):
    with pytest.raises(CommandError, match="--days.*from 1 to 3650"):
        run("sample", "--days", "3000000")
    with pytest.raises(CommandError, match="--days"):
        run("sample", "--days", "9" * 5000)
    with pytest.raises(CommandError, match="uid is longer than 200 characters"):
        run("sample", "--uid", "u" * 201)
    with pytest.raises(CommandError, match="uid contains a NUL character"):
        run("sample", "--uid", "a\x00b")
    with pytest.raises(CommandError, match="trait .* contains a lone surrogate"):
        run("sample", "--trait", "\ud800")
    token = run("sample", "--raw", "--days", "3650", "--uid", "u" * 200)
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
