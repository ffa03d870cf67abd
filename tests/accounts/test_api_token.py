"""manage.py api_token create|revoke|list: tokens of the management API, for staff
only, the key printed once; and docs/api.md's curl example, run against a live server."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.accounts.models import User
from apps.worlds import services as worlds
from tests.helpers import printed

DOCS = Path(settings.BASE_DIR) / "docs" / "api.md"
DOCUMENTED_HOST = "https://stagehand.example.org"


def test_create_prints_the_key_once_and_it_works(alice):
    out, err = printed("api_token", "create", "ALICE@example.org")
    key = out.strip()
    assert Token.objects.get(user=alice).key == key
    assert "shown only now" in err and key not in err
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/stats/").status_code == 200

    listed, _ = printed("api_token", "list")
    assert "alice@example.org" in listed and key not in listed
    assert listed.rstrip().endswith("1 token.")
    [row] = json.loads(printed("api_token", "list", "alice", "--json")[0])
    assert row["email"] == "alice@example.org" and "key" not in row

    with pytest.raises(CommandError, match="already has an API token; .* revoke"):
        printed("api_token", "create", "alice@example.org")
    assert Token.objects.get(user=alice).key == key


def test_create_json_carries_the_key(alice):
    data = json.loads(printed("api_token", "create", "alice@example.org", "--json")[0])
    assert data["key"] == Token.objects.get(user=alice).key
    assert data["email"] == "alice@example.org" and data["staff"] is True


def test_only_staff_get_a_token(db):
    User.objects.create_user("bob", "bob@example.org", "pw-123456789")
    with pytest.raises(CommandError, match="not an active staff user.*set_admin"):
        printed("api_token", "create", "bob@example.org")
    assert not Token.objects.exists()


def test_revoke(alice):
    key = printed("api_token", "create", "alice@example.org")[0].strip()
    out, _ = printed("api_token", "revoke", "alice@example.org")
    assert "Revoked the API token of alice@example.org." in out
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/stats/").status_code == 401
    with pytest.raises(CommandError, match="has no API token"):
        printed("api_token", "revoke", "alice@example.org")
    assert json.loads(printed("api_token", "list", "--json")[0]) == []
    assert printed("api_token", "list")[0].rstrip().endswith("0 tokens.")
    printed("api_token", "create", "alice")
    assert json.loads(printed("api_token", "revoke", "alice", "--json")[0]) == {
        "email": "alice@example.org",
        "revoked": True,
    }
    assert not Token.objects.exists()


@pytest.mark.parametrize("action", ["create", "revoke", "list"])
@pytest.mark.parametrize(
    ("identifier", "message"),
    [
        ("nobody@example.org", "No user with username or email"),
        ("a" * 255 + "@example.org", "No user with username or email"),
        ("alice\x00@example.org", "contains a NUL character"),
        ("alice\ud800@example.org", "contains a lone surrogate"),
    ],
)
def test_unknown_or_hostile_users_are_errors(alice, action, identifier, message):
    with pytest.raises(CommandError, match=message):
        printed("api_token", action, identifier)


def test_a_missing_email_is_an_error(db):
    with pytest.raises(CommandError):
        printed("api_token", "revoke")


def sh_blocks(text: str) -> list[list[str]]:
    return [b.strip().splitlines() for b in re.findall(r"```sh\n(.*?)```", text, re.S)]


def run_documented(lines: list[str], env: dict, base_url: str) -> list[str]:
    """Run a documented block: ``manage.py`` here (the live server's database is this
    test's), everything else, curl included, in a shell."""
    outputs = []
    for line in lines:
        assignment = re.fullmatch(r"(\w+)=\$\(python manage\.py (.*)\)", line)
        if assignment:
            env[assignment[1]] = printed("api_token", *shlex.split(assignment[2])[1:])[
                0
            ].strip()
            continue
        if line.startswith("python manage.py "):
            outputs.append(printed("api_token", *shlex.split(line)[3:])[0])
            continue
        assert line.startswith("curl "), line
        result = subprocess.run(
            ["bash", "-c", line.replace(DOCUMENTED_HOST, base_url)],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        outputs.append(result.stdout)
    return outputs


def test_the_documented_curl_example_works(live_server, alice):
    worlds.create_world("sample", "Sample World", "sample.example.org")
    text = DOCS.read_text()
    first, second = sh_blocks(text)[:2]
    env = {"PATH": "/usr/bin:/bin"}

    [page] = run_documented(first, env, live_server.url)
    body = json.loads(page)
    assert set(body) == {"count", "next", "previous", "results"}
    assert [w["id"] for w in body["results"]] == ["sample"]
    documented = json.loads(re.findall(r"```json\n(.*?)```", text, re.S)[0])
    assert set(documented["results"][0]) == set(body["results"][0])

    revoked, status = run_documented(second, env, live_server.url)
    assert "Revoked" in revoked
    assert status.strip() == "401"
