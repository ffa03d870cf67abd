"""Configs an attacker (or a broken exporter) writes: every one is refused with a JSON
path and nothing is written; none ends in a DataError or RecursionError traceback."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.worlds import services
from apps.worlds.models import Room, World
from tests.helpers import call
from tests.personas import EXAMPLE_CONFIG


def nested(depth: int, leaf=0):
    """A value nested ``depth`` lists deep, built without recursion."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def nested_text(depth: int) -> str:
    return "[" * depth + "0" + "]" * depth


def config(**world) -> dict:
    return {"world": {"id": "ok", "title": "T", **world}, "rooms": []}


def with_room(**room) -> dict:
    return {
        "world": {"id": "ok", "title": "T"},
        "rooms": [{"id": "r", "name": "R", **room}],
    }


def with_section(value) -> dict:
    return {"world": {"id": "ok", "title": "T"}, "exhibitors": [value]}


# (config, the JSON path its problem is reported at)
HOSTILE = {
    "title over 300 characters": (config(title="x" * 301), "$.world.title"),
    "locale of 60 characters": (config(locale="x" * 60), "$.world.locale"),
    "time zone of 300 characters": (config(timezone="x" * 300), "$.world.timezone"),
    "room name over 300 characters": (with_room(name="x" * 301), "$.rooms[0].name"),
    "sorting_priority 2^40": (
        with_room(sorting_priority=2**40),
        "$.rooms[0].sorting_priority",
    ),
    "sorting_priority -2^31 - 1": (
        with_room(sorting_priority=-(2**31) - 1),
        "$.rooms[0].sorting_priority",
    ),
    "connection_limit 2^63": (
        config(connection_limit=2**63),
        "$.world.connection_limit",
    ),
    "a number of 2^64 in a section": (with_section({"n": 2**64}), "$.exhibitors[0].n"),
    "NUL in the title": (config(title="Harbor\x00"), "$.world.title"),
    "NUL in a config string": (
        with_room(modules=[{"type": "chat.native", "config": {"x": "a\x00b"}}]),
        "$.rooms[0].modules[0].config.x",
    ),
    "NUL in a key": (with_section({"a\x00": 1}), '$.exhibitors[0]["a\\u0000"]'),
    "lone surrogate in a description": (
        with_room(description="\ud800"),
        "$.rooms[0].description",
    ),
    "lone surrogate in a section": (
        with_section(["ok", "\udfff"]),
        "$.exhibitors[0][1]",
    ),
    "NaN": (config(connection_limit=float("nan")), "$.world.connection_limit"),
    "Infinity in a section": (with_section({"x": float("inf")}), "$.exhibitors[0].x"),
    "-Infinity in a room": (
        with_room(sorting_priority=float("-inf")),
        "$.rooms[0].sorting_priority",
    ),
    "world id with a trailing newline": (
        {"world": {"id": "relimpnl\n", "title": "T"}},
        "$.world.id",
    ),
    "domain with a trailing newline": (
        config(domain="relimpnl.example.org\n"),
        "$.world.domain",
    ),
    "nested 600 deep": (with_section(nested(600)), "$.exhibitors[0]"),
    "nested 5,000 deep": (with_section(nested(5_000)), "$.exhibitors[0]"),
    "nested 100,000 deep": (with_section(nested(100_000)), "$.exhibitors[0]"),
}


def as_text(data: dict) -> str:
    """The config as a file would hold it: NaN and Infinity as JavaScript writes them,
    lone surrogates as \\u escapes, deep nesting written without recursion."""
    section = data.get("exhibitors")
    if section and _depth(section[0]) > 100:
        rest = {k: v for k, v in data.items() if k != "exhibitors"}
        deep = nested_text(_depth(section[0]))
        return json.dumps(rest)[:-1] + f', "exhibitors": [{deep}]}}'
    return json.dumps(data)


def _depth(value) -> int:
    depth = 0
    while isinstance(value, list) and value:
        depth, value = depth + 1, value[0]
    return depth


def run_import(tmp_path, text: str) -> str:
    path = tmp_path / "config.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return call("import_config", str(path))


@pytest.mark.django_db
@pytest.mark.parametrize(("data", "where"), HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_config_is_refused_by_json_path(data, where):
    with pytest.raises(services.ConfigError) as info:
        services.import_config(data)
    paths = [path for path, _ in info.value.problems]
    assert any(path.startswith(where) for path in paths), info.value.problems
    assert not World.objects.exists() and not Room.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("data", "where"), HOSTILE.values(), ids=HOSTILE.keys())
def test_the_command_refuses_a_hostile_file_by_json_path(tmp_path, data, where):
    text = as_text(data)
    with pytest.raises(CommandError) as info:
        run_import(tmp_path, text)
    message = str(info.value)
    assert "Nothing was imported" in message
    assert f"  {where}" in message or "  $: " in message, message
    # Printable as it is: no NUL or lone surrogate copied into the message.
    message.encode("utf-8")
    assert "\x00" not in message
    assert not World.objects.exists() and not Room.objects.exists()


@pytest.mark.django_db
def test_deep_nesting_is_refused_with_the_limit(tmp_path):
    limit = services.MAX_CONFIG_DEPTH
    with pytest.raises(CommandError) as info:
        run_import(tmp_path, as_text(with_section(nested(100_000))))
    assert f"nested more than {limit} levels deep" in str(info.value)


@pytest.mark.django_db
def test_everything_accepted_can_be_exported_and_imported_again(example_config):
    # As deep as the limit allows: the config's own object, exhibitors' list, then
    # lists inside the exhibitor down to the limit.
    limit = services.MAX_CONFIG_DEPTH
    example_config["exhibitors"] = [nested(limit - 2)]
    example_config["world"]["title"] = "x" * 300
    example_config["world"]["locale"] = "x" * 50
    example_config["rooms"][0]["name"] = "y" * 300
    example_config["rooms"][0]["sorting_priority"] = 2**31 - 1
    example_config["rooms"][1]["sorting_priority"] = -(2**31)
    assert services.validate_config(example_config) == []
    world = services.import_config(example_config).world
    exported = services.export_config(world)
    text = json.dumps(exported, indent=2)
    World.objects.all().delete()
    again = services.import_config(services.parse_config(text)).world
    assert services.export_config(again) == exported
    # One level more is refused.
    example_config["exhibitors"] = [nested(limit - 1)]
    assert [p for p, _ in services.validate_config(example_config)] == [
        "$.exhibitors[0]" + "[0]" * (limit - 2)
    ]


@pytest.mark.django_db
def test_every_problem_is_reported_at_once():
    data = with_room(name="x" * 301, sorting_priority=2**40, description="\x00")
    data["world"]["title"] = "\ud800"
    paths = {path for path, _ in services.validate_config(data)}
    assert paths == {
        "$.world.title",
        "$.rooms[0].name",
        "$.rooms[0].sorting_priority",
        "$.rooms[0].description",
    }


@pytest.mark.django_db
def test_an_update_with_a_hostile_value_leaves_the_world_as_it_was(example_config):
    world = services.import_config(example_config).world
    before = services.export_config(world)
    example_config["world"]["title"] = "Renamed"
    example_config["rooms"][2]["name"] = "x" * 301
    with pytest.raises(services.ConfigError, match=r"\$\.rooms\[2\]\.name"):
        services.import_config(example_config)
    assert services.export_config(World.objects.get(pk="harborconf")) == before


@pytest.mark.django_db
def test_the_example_fixture_still_imports():
    assert services.import_config(json.loads(EXAMPLE_CONFIG.read_text())).created


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("x" * 301, "longer than 300 characters"),
        ("Harbor\x00", "NUL"),
        ("\ud800", "lone surrogate"),
    ],
)
def test_create_world_refuses_a_title_the_database_cannot_hold(title, expected):
    with pytest.raises(services.WorldError, match=expected):
        services.create_world("harbor", title, "harbor.example.org")
    assert not World.objects.exists()


@pytest.mark.django_db
def test_create_world_refuses_a_world_id_with_a_trailing_newline():
    with pytest.raises(services.WorldError, match="lowercase letters and digits"):
        services.create_world("harbor\n", "Harbor", "harbor.example.org")
    assert not World.objects.exists()


def test_a_domain_with_a_trailing_newline_is_not_a_host_name():
    # create_world strips what a terminal adds; check_domain itself must refuse it.
    assert services.check_domain("harbor.example.org\n") is not None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("option", "value"),
    [("--title", "x" * 301), ("--title", "Harbor\x00"), ("--id", "harbor\x00")],
)
def test_the_create_world_command_explains_a_value_the_database_cannot_hold(
    option, value
):
    options = {"--id": "harbor", "--title": "Harbor", "--domain": "harbor.example.org"}
    options[option] = value
    args = [item for pair in options.items() for item in pair]
    with pytest.raises(CommandError, match="title|ID"):
        call_command("create_world", "--noinput", *args, stdout=StringIO())
    assert not World.objects.exists()


@pytest.mark.django_db
def test_asked_for_a_title_too_long_it_explains_and_asks_again():
    err = StringIO()
    answers = StringIO("harbor\n" + "x" * 301 + "\nHarbor\nharbor.example.org\n")
    call_command("create_world", stdin=answers, stdout=StringIO(), stderr=err)
    assert "The title is longer than 300 characters (301)." in err.getvalue()
    assert World.objects.get(pk="harbor").title == "Harbor"
