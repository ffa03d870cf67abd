import json
from io import StringIO

import pytest
from django.core.management import call_command

from apps.worlds import services


def run(*args) -> str:
    out = StringIO()
    call_command("list_worlds", *args, stdout=out)
    return out.getvalue()


def test_table_is_aligned(world, harbor):
    services.create_world("b", "A much longer title here", "b.example.org")
    lines = run().splitlines()
    assert lines[0].split() == ["ID", "Title", "URL"]
    assert [line.split()[0] for line in lines[1:]] == ["b", "harborconf", "sample"]
    url_col = lines[0].index("URL")
    assert lines[1][url_col:] == "https://b.example.org"
    assert lines[3][url_col:] == "https://sample.example.org"
    assert lines[2].rstrip() == "harborconf  Harbor Conference 2027"


def test_json(world):
    [item] = json.loads(run("--json"))
    assert item["id"] == "sample"
    assert item["url"] == "https://sample.example.org"
    assert "config" not in item


def test_deleted_worlds_only_with_all(world, harbor):
    services.delete_world(world)
    assert "sample" not in run()
    assert [w["id"] for w in json.loads(run("--json"))] == ["harborconf"]
    lines = run("--all").splitlines()
    assert lines[0].split() == ["ID", "Title", "URL", "Deleted"]
    assert lines[2].startswith("sample") and lines[2].rstrip().endswith(
        world.deleted_at.isoformat(timespec="seconds")
    )
    assert [w["id"] for w in json.loads(run("--json", "--all"))] == [
        "harborconf",
        "sample",
    ]


@pytest.mark.django_db
def test_no_worlds():
    assert run().strip() == "ID  Title  URL"
    assert json.loads(run("--json")) == []
