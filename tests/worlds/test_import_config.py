import json

import pytest
from django.core.management import CommandError

from apps.worlds import services
from apps.worlds.models import Room, World
from tests.helpers import call
from tests.personas import EXAMPLE_CONFIG


def write(tmp_path, data) -> str:
    path = tmp_path / "config.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


@pytest.mark.django_db
def test_the_example_fixture_imports():
    out = call("import_config", str(EXAMPLE_CONFIG))
    assert "Rooms: 3 created, 0 updated, 0 removed." in out
    assert out.rstrip().endswith("World 'harborconf' created.")
    world = World.objects.get(pk="harborconf")
    assert world.title == "Harbor Conference 2027"
    assert world.config["connection_limit"] == 3
    assert len(world.config["JWT_secrets"]) == 2
    assert "id" not in world.config and "title" not in world.config
    assert world.trait_grants["participant"] == ["ticket"]
    assert world.extra["exhibitors"][0]["name"] == "Lighthouse Tools"
    rooms = list(world.rooms.order_by("sorting_priority"))
    assert [r.import_id for r in rooms] == ["welcome", "main-stage", "hallway"]
    assert rooms[1].modules[0]["type"] == "livestream.native"
    assert rooms[0].trait_grants == {"participant": []}


@pytest.mark.django_db
def test_reimport_updates_in_place_and_removes_missing_rooms(tmp_path, example_config):
    call("import_config", str(EXAMPLE_CONFIG))
    example_config["world"]["title"] = "Renamed"
    example_config["rooms"] = [
        {**example_config["rooms"][0], "picture": "https://x.example.org/p.png"},
        {"id": "new", "name": "New room"},
    ]
    out = call("import_config", write(tmp_path, example_config))
    assert "Rooms: 1 created, 1 updated, 2 removed." in out
    assert out.rstrip().endswith("World 'harborconf' updated.")
    world = World.objects.get(pk="harborconf")
    assert world.title == "Renamed"
    live = world.rooms.filter(deleted_at__isnull=True)
    assert sorted(live.values_list("import_id", flat=True)) == ["new", "welcome"]
    assert live.get(import_id="welcome").extra == {
        "picture": "https://x.example.org/p.png"
    }
    assert Room.objects.filter(world=world, deleted_at__isnull=False).count() == 2


@pytest.mark.django_db
def test_stdin(example_config):
    call("import_config", "-", stdin=json.dumps(example_config))
    assert World.objects.filter(pk="harborconf").exists()


BAD_CASES = [
    ("{not json", ["$: is not valid JSON"]),
    ("[]", ["$: must be an object, not a list"]),
    ({"rooms": []}, ["$.world: is missing"]),
    (
        {"world": {"id": "Bad-Id", "title": ""}, "extra_section": 1},
        ["$.extra_section: unknown key", "$.world.id: ", "$.world.title: is missing"],
    ),
    (
        {
            "world": {
                "id": "ok",
                "title": "T",
                "JWT_secrets": [{"issuer": "i", "secret": "x" * 40}],
            }
        },
        ["$.world.JWT_secrets[0].audience: is missing"],
    ),
    (
        {
            "world": {
                "id": "ok",
                "title": "T",
                "JWT_secrets": [{"issuer": "i", "audience": "a", "secret": "short"}],
            }
        },
        ["$.world.JWT_secrets[0].secret: is 5 characters"],
    ),
    (
        {"world": {"id": "ok", "title": "T", "JWT_secrets": {}}},
        ["$.world.JWT_secrets: must be a list"],
    ),
    (
        {"world": {"id": "ok", "title": "T", "timezone": "Mars/Olympus"}},
        ["$.world.timezone: 'Mars/Olympus' is not a time zone"],
    ),
    (
        {"world": {"id": "ok", "title": "T", "domain": "http://x"}},
        ["$.world.domain: "],
    ),
    (
        {
            "world": {"id": "ok", "title": "T"},
            "roles": {"r": "world:view"},
            "trait_grants": {"r": [1]},
        },
        [
            "$.roles.r: must be a list of permissions",
            "$.trait_grants.r[0]: must be a trait",
        ],
    ),
    (
        {
            "world": {"id": "ok", "title": "T"},
            "rooms": [
                {"id": "a", "name": "A", "colour": "red"},
                {"id": "a", "name": "", "modules": [{"config": []}]},
                "room",
            ],
        },
        [
            "$.rooms[0].colour: unknown key",
            "$.rooms[1].id: 'a' is also the id of $.rooms[0]",
            "$.rooms[1].name: is missing",
            "$.rooms[1].modules[0].type: is missing",
            "$.rooms[1].modules[0].config: must be an object",
            "$.rooms[2]: must be an object",
        ],
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("data", "messages"), BAD_CASES)
def test_invalid_configs_report_every_problem_and_write_nothing(
    tmp_path, data, messages
):
    with pytest.raises(CommandError) as info:
        call("import_config", write(tmp_path, data))
    text = str(info.value)
    for message in messages:
        assert message in text
    assert f"({len(messages)} problem" in text
    assert "Nothing was imported" in text
    assert not World.objects.exists()
    assert not Room.objects.exists()


@pytest.mark.django_db
def test_invalid_update_leaves_the_world_as_it_was(tmp_path, example_config):
    call("import_config", str(EXAMPLE_CONFIG))
    before = services.export_config(World.objects.get(pk="harborconf"))
    example_config["world"]["title"] = "Changed"
    example_config["rooms"].append({"id": "welcome", "name": "Duplicate"})
    with pytest.raises(CommandError, match=r"\$\.rooms\[3\]\.id"):
        call("import_config", write(tmp_path, example_config))
    assert services.export_config(World.objects.get(pk="harborconf")) == before


@pytest.mark.django_db
def test_a_domain_of_another_world_is_refused(tmp_path, world, example_config):
    example_config["world"]["domain"] = "sample.example.org"
    with pytest.raises(
        CommandError,
        match=r"\$\.world\.domain: 'sample.example.org' is used by world 'sample'",
    ):
        call("import_config", write(tmp_path, example_config))
    assert not World.objects.filter(pk="harborconf").exists()


@pytest.mark.django_db
def test_a_deleted_world_is_not_overwritten(tmp_path, harbor, example_config):
    services.delete_world(harbor)
    with pytest.raises(CommandError, match="is deleted and waits for the purge job"):
        call("import_config", write(tmp_path, example_config))


@pytest.mark.django_db
def test_a_missing_file(tmp_path):
    with pytest.raises(CommandError, match="Cannot read .*nope.json"):
        call("import_config", str(tmp_path / "nope.json"))


@pytest.mark.django_db
def test_a_byte_order_mark_is_fine(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + EXAMPLE_CONFIG.read_bytes())
    call("import_config", str(path))
    assert World.objects.filter(pk="harborconf").exists()


@pytest.mark.django_db
def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes('{"world": {"id": "x", "title": "Caf\xe9"}}'.encode("latin-1"))
    with pytest.raises(CommandError, match=r"\$: is not valid JSON"):
        call("import_config", str(path))


@pytest.mark.django_db
def test_dry_run_lists_the_rooms_it_would_soft_delete_and_changes_nothing(
    tmp_path, django_capture_on_commit_callbacks
):
    call("import_config", str(EXAMPLE_CONFIG))
    data = json.loads(EXAMPLE_CONFIG.read_text())
    gone = data["rooms"].pop(0)
    data["world"]["title"] = "Renamed"
    before = services.export_config(World.objects.get(pk="harborconf"))
    with django_capture_on_commit_callbacks() as callbacks:
        out = call("import_config", write(tmp_path, data), "--dry-run")
    assert callbacks == []  # nothing committed, so nothing reindexed
    assert "Rooms: 0 would be created, 2 would be updated, 1 would be removed." in out
    assert f"would remove room {gone['id']!r} ({gone['name']})" in out
    assert out.rstrip().endswith(
        "Dry run: world 'harborconf' would be updated; nothing was changed."
    )
    assert services.export_config(World.objects.get(pk="harborconf")) == before
    assert not Room.objects.filter(deleted_at__isnull=False).exists()

    # The same file for real removes exactly that room.
    out = call("import_config", write(tmp_path, data))
    assert f"removed room {gone['id']!r} ({gone['name']})" in out
    assert list(
        Room.objects.filter(deleted_at__isnull=False).values_list(
            "import_id", flat=True
        )
    ) == [str(gone["id"])]


@pytest.mark.django_db
def test_a_dry_run_of_a_new_world_creates_nothing(tmp_path):
    data = json.loads(EXAMPLE_CONFIG.read_text())
    out = call("import_config", write(tmp_path, data), "--dry-run")
    assert "Rooms: 3 would be created" in out
    assert "world 'harborconf' would be created; nothing was changed." in out
    assert not World.objects.exists() and not Room.objects.exists()


@pytest.mark.django_db
def test_a_dry_run_still_reports_every_problem(tmp_path):
    data = json.loads(EXAMPLE_CONFIG.read_text())
    data["rooms"][0]["name"] = "x" * 301
    with pytest.raises(CommandError, match=r"\$\.rooms\[0\]\.name"):
        call("import_config", write(tmp_path, data), "--dry-run")


@pytest.mark.django_db
def test_json_for_scripts(tmp_path):
    created = json.loads(call("import_config", str(EXAMPLE_CONFIG), "--json"))
    assert created == {
        "world": "harborconf",
        "created": True,
        "dry_run": False,
        "rooms": {"created": 3, "updated": 0, "removed": 0},
        "removed_rooms": [],
    }
    data = json.loads(EXAMPLE_CONFIG.read_text())
    gone = data["rooms"].pop()
    dry = json.loads(
        call("import_config", write(tmp_path, data), "--dry-run", "--json")
    )
    assert dry["dry_run"] is True and dry["created"] is False
    assert dry["rooms"] == {"created": 0, "updated": 2, "removed": 1}
    assert dry["removed_rooms"] == [{"id": str(gone["id"]), "name": gone["name"]}]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("where", "path"),
    [("title", r"\$\.world\.title"), ("room name", r"\$\.rooms\[1\]\.name")],
)
def test_text_over_a_column_is_refused_before_the_database(tmp_path, where, path):
    """An export of a world that SQLite held with a 301-character title imports
    nowhere: the same CommandError on SQLite and PostgreSQL, nothing written."""
    data = json.loads(EXAMPLE_CONFIG.read_text())
    if where == "title":
        data["world"]["title"] = "x" * 301
    else:
        data["rooms"][1]["name"] = "y" * 301
    with pytest.raises(CommandError, match=path) as err:
        call("import_config", write(tmp_path, data))
    assert "longer than 300 characters (301)" in str(err.value)
    assert "Nothing was imported" in str(err.value)
    assert not World.objects.exists() and not Room.objects.exists()
