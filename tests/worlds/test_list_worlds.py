import json

import pytest

from apps.worlds import services
from tests.helpers import call


def test_table_is_aligned(world, harbor):
    services.create_world("b", "A much longer title here", "b.example.org")
    lines = call("list_worlds").splitlines()
    assert lines[0].split() == ["ID", "Title", "URL"]
    assert [line.split()[0] for line in lines[1:]] == ["b", "harborconf", "sample"]
    url_col = lines[0].index("URL")
    assert lines[1][url_col:] == "https://b.example.org"
    assert lines[3][url_col:] == "https://sample.example.org"
    assert lines[2].rstrip() == "harborconf  Harbor Conference 2027"


def test_json(world):
    [item] = json.loads(call("list_worlds", "--json"))
    assert item["id"] == "sample"
    assert item["url"] == "https://sample.example.org"
    assert "config" not in item


def test_deleted_worlds_only_with_all(world, harbor):
    services.delete_world(world)
    assert "sample" not in call("list_worlds")
    assert [w["id"] for w in json.loads(call("list_worlds", "--json"))] == [
        "harborconf"
    ]
    lines = call("list_worlds", "--all").splitlines()
    assert lines[0].split() == ["ID", "Title", "URL", "Deleted"]
    assert lines[2].startswith("sample") and lines[2].rstrip().endswith(
        world.deleted_at.isoformat(timespec="seconds")
    )
    assert [w["id"] for w in json.loads(call("list_worlds", "--json", "--all"))] == [
        "harborconf",
        "sample",
    ]


@pytest.mark.django_db
def test_no_worlds():
    assert call("list_worlds").strip() == "ID  Title  URL"
    assert json.loads(call("list_worlds", "--json")) == []
