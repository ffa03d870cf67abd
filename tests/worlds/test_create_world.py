import ast
import re

import pytest
from django.core.management import CommandError
from rest_framework.test import APIClient

from apps.worlds import services
from apps.worlds.models import World
from tests.helpers import documented, printed, run_json


def api_keys(out: str) -> list[dict]:
    line = next(x for x in out.splitlines() if x.startswith("Default API keys: "))
    return ast.literal_eval(line.removeprefix("Default API keys: "))


def create(world_id: str, title: str, domain: str) -> tuple[str, str]:
    """``create_world --noinput`` with these options; its stdout and stderr."""
    return printed(
        "create_world",
        "--noinput",
        "--id",
        world_id,
        "--title",
        title,
        "--domain",
        domain,
    )


@pytest.mark.django_db
def test_interactive_prompts_ask_id_title_domain():
    out, err = printed(
        "create_world", stdin="harbor2027\nHarbor 2027\nEvents.Example.org\n"
    )
    assert "Internal ID for the new world (alphanumeric): " in out
    assert out.index("Internal ID") < out.index("Title") < out.index("Domain")
    assert out.rstrip().endswith("World created.")
    assert err == ""
    world = World.objects.get(pk="harbor2027")
    assert (world.title, world.domain) == ("Harbor 2027", "events.example.org")
    [key] = api_keys(out)
    assert key["issuer"] == "any" and key["audience"] == "stagehand"
    assert re.fullmatch(r"[A-Za-z0-9]{64}", key["secret"])
    assert world.config["JWT_secrets"] == [key]
    assert world.roles == services.DEFAULT_ROLES


@pytest.mark.django_db
def test_noinput_with_options():
    out, _ = create("a1", "A", "a.example.org")
    assert "World created." in out
    assert World.objects.get(pk="a1").domain == "a.example.org"


@pytest.mark.django_db
def test_each_world_gets_its_own_secret():
    out1, _ = create("a", "A", "a.example.org")
    out2, _ = create("b", "B", "b.example.org")
    assert api_keys(out1)[0]["secret"] != api_keys(out2)[0]["secret"]


@pytest.mark.django_db
def test_a_bad_answer_is_explained_and_asked_again(world):
    out, err = printed(
        "create_world",
        stdin="Bad-ID\nsample\ngood\nTitle\nhttps://x.example.org/\nsample.example.org\nx.example.org\n",
    )
    assert "lowercase letters and digits" in err
    assert "already exists" in err
    assert "host name only" in err
    assert "already used by world 'sample'" in err
    assert out.count("Internal ID") == 3
    assert World.objects.get(pk="good").domain == "x.example.org"


@pytest.mark.django_db
def test_end_of_input_is_an_error():
    with pytest.raises(CommandError, match="--noinput --id ID"):
        printed("create_world", stdin="onlyid\n")
    assert not World.objects.exists()


@pytest.mark.django_db
def test_noinput_needs_every_option():
    with pytest.raises(CommandError, match="--noinput needs --title, --domain"):
        printed("create_world", "--noinput", "--id", "x")


@pytest.mark.django_db
def test_existing_id_is_refused_not_overwritten(world):
    with pytest.raises(CommandError, match="'sample' already exists"):
        create("sample", "New", "n.example.org")
    world.refresh_from_db()
    assert world.title == "Sample World"


@pytest.mark.django_db
def test_existing_domain_is_refused(world):
    with pytest.raises(CommandError, match="already used by world 'sample'"):
        create("x", "X", "SAMPLE.example.org")
    assert not World.objects.filter(pk="x").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("bad_id", ["Upper", "with-dash", "a" * 51, "ü"])
def test_bad_ids_are_refused(bad_id):
    with pytest.raises(CommandError, match="world ID"):
        create(bad_id, "X", "x.example.org")


@pytest.mark.django_db
@pytest.mark.parametrize("bad_domain", ["https://x.org", "x.org/path", "-x.org", "a b"])
def test_bad_domains_are_refused(bad_domain):
    with pytest.raises(CommandError, match="domain"):
        create("x", "X", bad_domain)
    assert not World.objects.exists()


@pytest.mark.django_db
def test_a_title_over_the_column_is_a_command_error_on_every_database():
    # Checked before the database: PostgreSQL would raise DataError, SQLite store it.
    title = "x" * (World._meta.get_field("title").max_length + 1)
    with pytest.raises(CommandError, match="longer than 300 characters"):
        create("longt", title, "l.example")
    assert not World.objects.exists()


@pytest.mark.django_db
def test_json_is_the_apis_world_with_the_secret_printed_today(alice):
    args = documented(
        "docs/worlds.md",
        'create_world --noinput --id harbor --title "Harbor 2027" '
        "--domain events.example.org --json",
    )
    data, err = run_json(*args)
    assert err == ""
    world = World.objects.get(pk="harbor")
    secrets = data.pop("JWT_secrets")
    assert secrets == world.config["JWT_secrets"]
    assert re.fullmatch(r"[A-Za-z0-9]{64}", secrets[0]["secret"])
    api = APIClient()
    api.force_authenticate(alice)
    assert data == api.get("/api/v1/worlds/harbor/").json()
    assert (data["id"], data["title"], data["url"]) == (
        "harbor",
        "Harbor 2027",
        "https://events.example.org",
    )
    # The detail itself has the secret's issuer and audience only.
    assert secrets[0]["secret"] not in str(data)


@pytest.mark.django_db
def test_json_asks_its_questions_on_stderr():
    data, err = run_json(
        "create_world", "--json", stdin="Bad-ID\nh1\nHarbor One\nh1.example.org\n"
    )
    assert data["id"] == "h1" and data["domain"] == "h1.example.org"
    assert "Internal ID for the new world (alphanumeric): " in err
    assert err.index("Internal ID") < err.index("Title") < err.index("Domain")


@pytest.mark.django_db
def test_json_errors_stay_command_errors(world):
    with pytest.raises(CommandError, match="--noinput needs --title"):
        run_json(
            "create_world", "--noinput", "--id", "x", "--domain", "x.org", "--json"
        )
    with pytest.raises(CommandError):
        run_json(
            "create_world",
            "--noinput",
            "--json",
            "--id",
            "sample",
            "--title",
            "T",
            "--domain",
            "t.example.org",
        )
