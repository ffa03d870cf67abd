import json

import pytest
from django.core.management import CommandError
from django.db import connection

from apps.search import engines, services
from apps.worlds.models import Room, World
from tests.helpers import call

from .conftest import found


def test_query_prints_ranked_results_with_snippets(harbor_search):
    Room.objects.create(
        world=harbor_search,
        import_id="lounge",
        name="Lounge",
        description="Right next to the stage, with coffee",
    )
    Room.objects.create(world=harbor_search, import_id="side", name="Side Stage")
    call("search", "index")

    output = call("search", "query", "stage")

    lines = output.splitlines()
    assert lines[0].split() == ["Model", "ID", "World", "Title", "Match"]
    # Matches in the name (weight A) rank above a match in the description (B).
    assert [line.split()[3] for line in lines[1:4]] in (
        ["Main", "Side", "Lounge"],
        ["Side", "Main", "Lounge"],
    )
    assert "next to the **stage**" in output
    assert "3 results for 'stage'." in lines[-1]


def test_query_json_world_model_and_limit(harbor_search):
    other = World.objects.create(id="other", title="Other Stage Fest")
    Room.objects.create(world=other, import_id="x", name="Stage Left")
    call("search", "index")

    data = json.loads(call("search", "query", "stage", "--json"))
    assert {d["world"] for d in data} == {"harborconf", "other"}
    assert set(data[0]) == {"model", "id", "world", "title", "snippet", "rank"}
    assert [d["rank"] for d in data] == sorted((d["rank"] for d in data), reverse=True)

    only = json.loads(
        call(
            "search", "query", "stage", "--world", "other", "--model", "rooms", "--json"
        )
    )
    assert [(d["model"], d["title"]) for d in only] == [("room", "Stage Left")]
    assert (
        len(json.loads(call("search", "query", "stage", "--limit", "1", "--json"))) == 1
    )


def test_words_match_as_prefixes_and_all_must_match(harbor_search):
    call("search", "index")
    assert [m for m, _ in found("keyn")] == ["room"]
    assert found("keynotes lighthouse") == []


@pytest.mark.parametrize(
    "query", ["muller", "Müller", "MÜLLER", "cafe", "Café", "creme brulee", "Zoë"]
)
def test_umlauts_and_accents_match_either_way(harbor_search, query):
    Room.objects.create(
        world=harbor_search,
        import_id="kiosk",
        name="Café Müller",
        description="Crème brûlée und Kaffee, bei Zoe",
    )
    call("search", "index")
    assert [m for m, _ in found(query)] == ["room"]


def test_query_without_words_or_index_is_an_error(harbor_search):
    with pytest.raises(CommandError, match="has not been built yet"):
        call("search", "query", "stage")
    call("search", "index")
    with pytest.raises(CommandError, match="at least one word"):
        call("search", "query", "  ?! ")


@pytest.mark.postgres
def test_postgres_folds_sharp_s_too(harbor_search):
    Room.objects.create(world=harbor_search, import_id="s", name="Hafenstraße Lounge")
    call("search", "index")
    assert [h for h in found("hafenstrasse")] == found("Hafenstraße") != []


def test_sqlite_without_fts5_says_so_in_one_sentence(harbor_search, monkeypatch):
    # This Python's SQLite has FTS5; pretend the probe found none.
    monkeypatch.setattr(services, "_sqlite_has_fts5", lambda: False)
    if connection.vendor == "postgresql":  # PostgreSQL never needs FTS5
        assert "Indexed 5 documents" in call("search", "index")
        return
    with pytest.raises(CommandError, match=r"^This SQLite library was built without"):
        call("search", "index")
    assert services.update_documents("rooms", [1]) == 0  # writes go on, unindexed


@pytest.mark.postgres
def test_postgres_ranks_a_bounded_number_of_matches(harbor_search, monkeypatch):
    for n in range(4):
        Room.objects.create(
            world=harbor_search, import_id=f"b{n}", name=f"Breakout {n}"
        )
    call("search", "index")
    assert len(found("breakout")) == 4
    monkeypatch.setattr(engines, "RANK_CANDIDATES", 2)
    assert len(found("breakout")) == 2
