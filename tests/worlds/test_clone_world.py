import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from apps.accounts.models import User
from apps.worlds import services
from apps.worlds.models import World
from tests.helpers import call, documented, run_json


def test_clone_copies_settings_and_rooms_but_no_users(harbor):
    harbor.locale, harbor.timezone, harbor.domain = (
        "de",
        "Europe/Berlin",
        "h.example.org",
    )
    harbor.save()
    services.get_or_create_attendee(harbor, {"uid": "bob", "traits": ["ticket"]})
    out = call(
        "clone_world",
        "harborconf",
        "--noinput",
        "--id",
        "harbor2",
        "--title",
        "H2",
        "--domain",
        "h2.example.org",
    )
    assert out.strip() == "World cloned."
    clone = World.objects.get(pk="harbor2")
    assert (clone.title, clone.domain) == ("H2", "h2.example.org")
    for attr in ("config", "roles", "trait_grants", "locale", "timezone", "extra"):
        assert getattr(clone, attr) == getattr(harbor, attr), attr
    fields = (
        "import_id",
        "name",
        "description",
        "sorting_priority",
        "modules",
        "trait_grants",
        "extra",
    )
    assert list(clone.rooms.order_by("sorting_priority").values_list(*fields)) == list(
        harbor.rooms.order_by("sorting_priority").values_list(*fields)
    )
    assert clone.attendees.count() == 0
    assert User.objects.filter(world=harbor).count() == 1
    # Same secrets: a token of the source opens the clone too.
    token = services.generate_token(harbor, [])
    assert services.verify_token(clone, token)


def test_deleted_rooms_are_not_cloned(harbor):
    harbor.rooms.filter(import_id="hallway").update(deleted_at=harbor.created_at)
    call(
        "clone_world",
        "harborconf",
        "--noinput",
        "--id",
        "h3",
        "--title",
        "H3",
        "--domain",
        "h3.example.org",
    )
    assert sorted(
        World.objects.get(pk="h3").rooms.values_list("import_id", flat=True)
    ) == [
        "main-stage",
        "welcome",
    ]


def test_new_secrets(harbor):
    call(
        "clone_world",
        "harborconf",
        "--noinput",
        "--new-secrets",
        "--id",
        "h4",
        "--title",
        "H4",
        "--domain",
        "h4.example.org",
    )
    clone = World.objects.get(pk="h4")
    [entry] = clone.config["JWT_secrets"]
    assert entry["secret"] not in {e["secret"] for e in harbor.config["JWT_secrets"]}
    assert clone.config["connection_limit"] == 3
    with pytest.raises(services.TokenError):
        services.verify_token(clone, services.generate_token(harbor, []))


def test_interactive(harbor):
    out = call("clone_world", "harborconf", stdin="h5\nHarbor Five\nh5.example.org\n")
    assert "Internal ID for the new world (alphanumeric): " in out
    assert World.objects.get(pk="h5").title == "Harbor Five"


def test_unknown_and_deleted_sources(world):
    with pytest.raises(CommandError, match="No world 'nope'; list_worlds"):
        call(
            "clone_world",
            "nope",
            "--noinput",
            "--id",
            "x",
            "--title",
            "X",
            "--domain",
            "x.example.org",
        )
    services.delete_world(world)
    with pytest.raises(CommandError, match="No world 'sample'"):
        call(
            "clone_world",
            "sample",
            "--noinput",
            "--id",
            "x",
            "--title",
            "X",
            "--domain",
            "x.example.org",
        )


def test_taken_id_and_domain(world, harbor):
    with pytest.raises(CommandError, match="'sample' already exists"):
        call(
            "clone_world",
            "harborconf",
            "--noinput",
            "--id",
            "sample",
            "--title",
            "X",
            "--domain",
            "x.example.org",
        )
    with pytest.raises(CommandError, match="already used by world 'sample'"):
        call(
            "clone_world",
            "harborconf",
            "--noinput",
            "--id",
            "x",
            "--title",
            "X",
            "--domain",
            "sample.example.org",
        )
    assert World.objects.count() == 2


def test_json_is_the_apis_world_without_secrets(alice, harbor):
    services.clone_world(harbor, "harbor", "Harbor", "harbor.example.org")
    args = documented(
        "docs/worlds.md",
        'clone_world harbor --noinput --id harborcopy --title "Harbor copy" '
        "--domain copy.example.org --json",
    )
    data, err = run_json(*args)
    assert err == ""
    api = APIClient()
    api.force_authenticate(alice)
    assert data == api.get("/api/v1/worlds/harborcopy/").json()
    assert data["title"] == "Harbor copy" and data["rooms"]
    clone = World.objects.get(pk="harborcopy")
    for entry in clone.config["JWT_secrets"]:
        assert entry["secret"] not in str(data)


def test_json_new_secrets_prints_no_secret(harbor):
    data, _ = run_json(
        "clone_world",
        "harborconf",
        "--new-secrets",
        "--json",
        stdin="h6\nHarbor Six\nh6.example.org\n",
    )
    assert data["id"] == "h6"
    [entry] = World.objects.get(pk="h6").config["JWT_secrets"]
    assert entry["secret"] not in str(data)
    assert "JWT_secrets" not in data


def test_json_asks_on_stderr_and_errors_stay_command_errors(harbor):
    out, err = StringIO(), StringIO()
    call_command(
        "clone_world",
        "harborconf",
        "--json",
        stdin=StringIO("h7\nHarbor Seven\nh7.example.org\n"),
        stdout=out,
        stderr=err,
    )
    assert "Internal ID for the new world" in err.getvalue()
    assert json.loads(out.getvalue())["id"] == "h7"
    with pytest.raises(CommandError, match="No world 'nope'"):
        run_json("clone_world", "nope", "--json", "--noinput")
