import json
import re

import pytest
from django.core.management import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.accounts.models import User
from apps.jobs.registry import get_job
from apps.search import services
from apps.search.models import Generation
from apps.worlds import services as worlds
from apps.worlds.models import Room, World
from tests.helpers import call

from .conftest import found, run_printed


def test_index_makes_every_model_searchable(harbor_search):
    output = call("search", "index")

    assert "Indexed 5 documents in 3 models." in output
    assert found("harbor conference") == [("world", "harborconf")]
    assert found("harbor.example") == [("world", "harborconf")]
    main = Room.objects.get(import_id="main")
    welcome = Room.objects.get(import_id="welcome")
    assert found("keynotes") == [("room", str(main.pk))]
    # Markdown page content of a page.markdown module.
    assert found("lighthouse") == [("room", str(welcome.pk))]
    grace = User.objects.get(display_name="Grace Hopper")
    assert found("grace") == [("attendee", str(grace.pk))]
    # Searchable profile fields count; others do not.
    assert found("navy research") == [("attendee", str(grace.pk))]
    assert found("5550199") == []


def test_operators_are_not_indexed(harbor_search, alice):
    call("search", "index")
    assert found("alice") == []


def test_index_named_models_accepts_singular_and_plural(harbor_search):
    output = call("search", "index", "room", "Attendees")

    assert "rooms" in output and "attendees" in output
    assert set(Generation.objects.values_list("model", flat=True)) == {
        "rooms",
        "attendees",
    }


def test_unknown_model_is_an_error(harbor_search):
    with pytest.raises(CommandError, match="no searchable model 'spaceships'"):
        call("search", "index", "spaceships")
    with pytest.raises(CommandError, match="no searchable model 'spaceship'"):
        call("search", "query", "x", "--model", "spaceship")


def test_reindex_builds_a_new_generation_and_drops_the_old(harbor_search):
    call("search", "index", "rooms")
    first = Generation.objects.get(model="rooms")
    Room.objects.filter(import_id="main").update(name="Grand Hall")

    output = call("search", "index", "rooms", "--reindex")

    second = Generation.objects.get(model="rooms")
    assert second.state == "active" and second.name != first.name
    assert second.name.startswith("rooms-")
    assert f"{second.name}" in output and first.name in output  # replaced
    assert found("grand hall") and not found("main stage")
    tables = services.engine().generation_tables(connection.cursor())
    assert second.table in tables and first.table not in tables


def test_rows_changed_during_a_reindex_are_counted_and_caught_up(harbor_search):
    call("search", "index")
    main = Room.objects.get(import_id="main")

    def write_during_build(model: str) -> None:
        # No transaction here, so the document update runs at once, into the
        # generation that is about to be replaced.
        main.name = "Zanzibar Lounge"
        main.save()

    results = services.index(["rooms"], reindex=True, after_build=write_during_build)

    assert results[0].changed == 1
    assert found("zanzibar") == []  # the new generation was built before the write
    command = services.catch_up_command(results)
    since = services.format_timestamp(results[0].started_at.replace(microsecond=0))
    assert command == f"python manage.py search index rooms -f {since}"
    output = run_printed(command)
    assert "since" in output
    assert found("zanzibar") == [("room", str(main.pk))]


def test_reindex_without_changes_prints_no_catch_up(harbor_search):
    call("search", "index")
    output = call("search", "index", "--reindex")
    assert "Catch up" not in output
    assert "Indexed 5 documents" in output


def test_from_indexes_only_rows_modified_since(harbor_search):
    call("search", "index")
    cutoff = timezone.now()
    # Queryset updates send no signals: the index does not know yet.
    Room.objects.filter(import_id="main").update(
        name="Engine Room", updated_at=timezone.now()
    )
    Room.objects.filter(import_id="welcome").update(
        deleted_at=timezone.now(), updated_at=timezone.now()
    )
    User.objects.filter(display_name="Ada Lovelace").update(
        display_name="Ada King", updated_at=timezone.now()
    )
    assert found("lighthouse") and not found("engine")

    output = call("search", "index", "-f", cutoff.isoformat())

    assert found("engine") and not found("lighthouse") and found("ada king")
    # Only the three changed rows were indexed (the deleted room has no document).
    assert "Indexed 2 documents" in output


def test_bad_timestamp_and_from_with_reindex_are_errors(harbor_search):
    with pytest.raises(CommandError, match="Cannot read the timestamp 'yesterday'"):
        call("search", "index", "-f", "yesterday")
    with pytest.raises(CommandError, match="use either --reindex or -f"):
        call("search", "index", "--reindex", "-f", "2027-02-20T20:02:00Z")


def test_saving_updates_the_document_after_commit(
    harbor_search, django_capture_on_commit_callbacks
):
    call("search", "index")
    main = Room.objects.get(import_id="main")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        main.name = "Boiler Room"
        main.save()
        harbor_search.title = "Dockside Summit"
        harbor_search.save()
        User.objects.create(
            username="harborconf.3",
            world=harbor_search,
            token_id="3",
            display_name="Hedy Lamarr",
            profile={"org": "Frequency Hopping"},
        )
    assert callbacks  # nothing ran before the commit
    assert found("boiler") == [("room", str(main.pk))]
    assert found("main stage") == []
    assert found("dockside") == [("world", "harborconf")]
    assert [m for m, _ in found("frequency")] == ["attendee"]


def test_making_a_profile_field_searchable_reindexes_attendees(
    harbor_search, django_capture_on_commit_callbacks
):
    call("search", "index")
    assert found("5550199") == []
    with django_capture_on_commit_callbacks(execute=True):
        harbor_search.config["profile_fields"][1]["searchable"] = True
        harbor_search.save()
    assert [m for m, _ in found("5550199")] == ["attendee"]


def test_soft_delete_removes_the_document(
    harbor_search, django_capture_on_commit_callbacks
):
    call("search", "index")
    welcome = Room.objects.get(import_id="welcome")
    grace = User.objects.get(display_name="Grace Hopper")
    with django_capture_on_commit_callbacks(execute=True):
        welcome.deleted_at = timezone.now()
        welcome.save()
        grace.deleted_at = timezone.now()
        grace.save(update_fields=["deleted_at"])
    assert found("lighthouse") == []
    assert found("grace") == []
    assert found("keynotes")


def test_soft_deleted_world_hides_its_rooms_and_attendees(harbor_search):
    call("search", "index")
    worlds.delete_world(World.objects.get(pk="harborconf"))  # a queryset update
    assert found("harbor") == []
    assert found("keynotes") == []
    assert found("ada") == []


def test_hard_delete_removes_the_document(
    harbor_search, django_capture_on_commit_callbacks
):
    call("search", "index")
    with django_capture_on_commit_callbacks(execute=True):
        Room.objects.get(import_id="main").delete()
    assert found("keynotes") == []


def test_updates_before_the_first_index_do_nothing(harbor_search):
    assert services.update_documents("rooms", [Room.objects.first().pk]) == 0
    assert not Generation.objects.exists()


def test_nightly_job_reindexes(harbor_search):
    call("search", "index")
    summary = get_job("search-index").func()
    assert "rooms rooms-" in summary and "(2)" in summary
    assert Generation.objects.filter(state="active").count() == 3


def test_status_lists_active_generations(harbor_search):
    assert "No index yet" in call("search", "status")
    call("search", "index")
    output = call("search", "status")
    for model in ("worlds", "rooms", "attendees"):
        assert f"{model}-" in output


def test_one_transaction_of_many_writes_sends_one_batched_update(
    harbor_search, django_capture_on_commit_callbacks
):
    call("search", "index")
    with django_capture_on_commit_callbacks() as callbacks:
        for n in range(5):
            Room.objects.create(
                world=harbor_search, import_id=f"r{n}", name=f"Breakout {n}"
            )
    # Search's own, beside those of other receivers (the connections' snapshots).
    callbacks = [c for c in callbacks if c.__module__ == "apps.search.signals"]
    assert len(callbacks) == 5  # one per save
    with CaptureQueriesContext(connection) as queries:
        for callback in callbacks:
            callback()
    inserts = [q for q in queries if 'INSERT INTO "search_gen_' in q["sql"]]
    assert len(inserts) == 1  # the first callback indexed all five
    assert len(found("breakout")) == 5


def test_renaming_a_world_leaves_its_attendees_alone(
    harbor_search, django_capture_on_commit_callbacks
):
    call("search", "index")
    attendees = Generation.objects.get(model="attendees").table
    with django_capture_on_commit_callbacks(execute=True):
        harbor_search.config["profile_fields"][1]["searchable"] = True
        harbor_search.save()  # updates the attendees, once
    with django_capture_on_commit_callbacks() as callbacks:
        harbor_search.title = "Harbor Conference 2028"
        harbor_search.save()
    with CaptureQueriesContext(connection) as queries:
        for callback in callbacks:
            callback()
    assert not [q for q in queries if attendees in q["sql"]]
    assert found("2028") == [("world", "harborconf")]


def test_rows_hard_deleted_during_a_reindex_are_not_found_after_it(harbor_search):
    call("search", "index")
    main = Room.objects.get(import_id="main")

    def delete_during_build(model: str) -> None:
        main.delete()  # its document goes from the old generation only

    services.index(["rooms"], reindex=True, after_build=delete_during_build)
    assert found("keynotes") == []
    assert [m for m, _ in found("lighthouse")] == ["room"]


@pytest.mark.parametrize(
    "harbor_committed",
    [
        # Inside the test's transaction: everything on the test's connection.
        pytest.param(False, id="in-transaction"),
        # Committed: on PostgreSQL the builds run on connections of their own;
        # on SQLite the reindex is one transaction.
        pytest.param(
            True, id="committed", marks=pytest.mark.django_db(transaction=True)
        ),
    ],
)
def test_a_failure_before_the_switch_keeps_every_old_generation(
    harbor_search, harbor_committed
):
    assert connection.in_atomic_block != harbor_committed
    call("search", "index")
    before = dict(Generation.objects.values_list("model", "name"))
    tables = services.engine().generation_tables(connection.cursor())

    def fail_after_rooms(model: str) -> None:
        if model == "rooms":
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        services.index(reindex=True, after_build=fail_after_rooms)

    assert dict(Generation.objects.values_list("model", "name")) == before
    assert sorted(services.engine().generation_tables(connection.cursor())) == sorted(
        tables
    )
    assert found("keynotes")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_failing_document_update_is_logged_and_the_write_stands(
    harbor_search, caplog, settings
):
    settings.SEARCH_MAX_FIELD_CHARS = 10_000_000  # let the whole text through
    call("search", "index")
    # More text than a tsvector holds (1 MB): PostgreSQL refuses the document.
    words = " ".join(f"w{i:07d}" for i in range(120_000))
    main = Room.objects.get(import_id="main")
    main.description = words
    main.save()  # autocommit: the update runs right after, and fails

    assert Room.objects.get(pk=main.pk).description == words
    assert "too long for tsvector" in caplog.text
    assert found("keynotes") == [("room", str(main.pk))]  # the old document


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_text_over_a_tsvectors_size_is_indexed_up_to_the_limit(harbor_search):
    # 120,000 distinct words: over 1 MB as one tsvector, which PostgreSQL refuses.
    words = " ".join(f"w{i:07d}" for i in range(120_000))
    Room.objects.bulk_create(
        [Room(world=harbor_search, import_id="huge", name="Huge", description=words)]
    )
    huge = Room.objects.get(import_id="huge")

    call("search", "index", "--reindex")

    assert found("w0000010") == [("room", str(huge.pk))]
    assert found("w0100000") == []  # beyond SEARCH_MAX_FIELD_CHARS
    assert found("keynotes")  # the other documents are there too
    huge.description = "lighthouse " + words
    huge.save()  # the update after commit truncates the same way
    assert ("room", str(huge.pk)) in found("lighthouse")


def test_progress_counts_rows_against_the_counted_total(harbor_search):
    # Off a terminal the progress is one line; its total is counted with each
    # model's own query, so it matches what was indexed (5 documents, 2 of 3 rows).
    assert services.rows_to_index(reindex=True) == 5
    output = call("search", "index", "--reindex")
    assert re.search(r"^Indexing: 5 of 5 rows in [\d.]+ m?s", output, re.M), output
    cutoff = timezone.now()
    Room.objects.filter(import_id="main").update(
        name="Engine Room", updated_at=timezone.now()
    )
    assert services.rows_to_index(since=cutoff) == 1
    output = call("search", "index", "-f", cutoff.isoformat())
    assert re.search(r"^Indexing: 1 of 1 row in ", output, re.M), output


def test_index_json_says_what_each_model_got(harbor_search):
    data = json.loads(call("search", "index", "--json"))
    assert data["documents"] == 5 and data["catch_up"] is None
    assert [(r["model"], r["mode"], r["documents"]) for r in data["results"]] == [
        ("worlds", "reindex", 1),
        ("rooms", "reindex", 2),
        ("attendees", "reindex", 2),
    ]
    again = json.loads(call("search", "index", "rooms", "--json"))
    assert again["results"][0]["mode"] == "update"
    assert again["results"][0]["generation"] == data["results"][1]["generation"]
