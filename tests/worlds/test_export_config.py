import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.forms.models import model_to_dict

from apps.worlds.models import World
from tests.helpers import call
from tests.personas import EXAMPLE_CONFIG


def snapshot() -> dict:
    """Every world and live room, as comparable data (timestamps left out)."""
    worlds = {}
    for world in World.objects.all():
        data = model_to_dict(world, exclude=["created_at", "updated_at"])
        data["rooms"] = [
            model_to_dict(room, exclude=["id", "world", "updated_at"])
            for room in world.rooms.order_by("import_id")
        ]
        worlds[world.id] = data
    return worlds


@pytest.mark.django_db
def test_round_trip_on_an_empty_database(tmp_path):
    call("import_config", str(EXAMPLE_CONFIG))
    world = World.objects.get(pk="harborconf")
    world.domain, world.locale, world.timezone = "h.example.org", "de", "Europe/Berlin"
    world.save()
    path = tmp_path / "export.json"
    call("export_config", "harborconf", "-o", str(path))
    before = snapshot()
    World.objects.all().delete()
    assert snapshot() == {}
    call("import_config", str(path))
    assert snapshot() == before
    assert json.loads(path.read_text()) == json.loads(
        call("export_config", "harborconf")
    )


@pytest.mark.django_db
def test_export_is_the_venueless_format_and_keeps_unknown_sections():
    call("import_config", str(EXAMPLE_CONFIG))
    exported = json.loads(call("export_config", "harborconf"))
    original = json.loads(EXAMPLE_CONFIG.read_text())
    assert exported["exhibitors"] == original["exhibitors"]
    assert exported["roles"] == original["roles"]
    assert exported["trait_grants"] == original["trait_grants"]
    for key, value in original["world"].items():
        assert exported["world"][key] == value
    for mine, theirs in zip(exported["rooms"], original["rooms"], strict=True):
        assert {k: mine[k] for k in theirs} == theirs


def test_created_world_exports_and_reimports(world):
    text = call("export_config", "sample")
    data = json.loads(text)
    assert data["world"]["domain"] == "sample.example.org"
    assert data["rooms"] == []
    World.objects.all().delete()
    out = StringIO()
    call_command("import_config", "-", stdin=StringIO(text), stdout=out)
    assert World.objects.get(pk="sample").config == world.config


def test_errors(world, tmp_path):
    with pytest.raises(CommandError, match="No world 'nope'; list_worlds"):
        call("export_config", "nope")
    with pytest.raises(CommandError, match="Cannot write"):
        call("export_config", "sample", "-o", str(tmp_path / "missing-dir" / "x.json"))


def test_the_export_file_is_private(world, tmp_path):
    path = tmp_path / "w.json"
    path.write_text("old")
    out = call("export_config", "sample", "-o", str(path))
    assert out.strip() == f"World 'sample' exported to {path}."
    assert json.loads(path.read_text())["world"]["id"] == "sample"
    assert path.stat().st_mode & 0o777 == 0o600
    new = tmp_path / "new.json"
    call("export_config", "sample", "-o", str(new))
    assert new.stat().st_mode & 0o777 == 0o600
