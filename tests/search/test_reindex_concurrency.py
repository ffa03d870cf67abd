"""Reindexing on several connections: all models switch together or not at all,
and searches are answered throughout."""

import threading

import pytest
from django.db import OperationalError, connection

from apps.search import services
from apps.search.models import Generation
from apps.search.sources import ROOMS
from apps.worlds.models import Room
from tests.helpers import call

from .conftest import found

pytestmark = pytest.mark.postgres


def generation_tables() -> list[str]:
    with connection.cursor() as cursor:
        return sorted(services.engine().generation_tables(cursor))


def active_generations() -> dict[str, str]:
    return dict(Generation.objects.filter(state="active").values_list("model", "name"))


@pytest.mark.django_db(transaction=True)
def test_searches_keep_answering_during_reindex(harbor_search):
    call("search", "index")
    stop = threading.Event()
    answers: list[int] = []
    failures: list[BaseException] = []

    def search_until_stopped() -> None:
        try:
            while not stop.is_set():
                hits = services.query("stage keynotes")
                answers.append(len(hits))
                hits = services.query("grace", models=["attendees"])
                answers.append(len(hits))
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=search_until_stopped) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        switches = []
        for _ in range(5):
            for result in services.index(reindex=True):
                switches.append((result.replaced, result.generation))
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)

    assert not failures, failures
    # Five new generations of each model were built and switched to.
    assert len(switches) == 15
    assert all(old and old != new for old, new in switches), switches
    assert Generation.objects.filter(state="active").count() == 3
    assert answers and all(count == 1 for count in answers), answers
    # Only the active generations' tables are left.
    assert generation_tables() == sorted(
        Generation.objects.values_list("table", flat=True)
    )


@pytest.mark.django_db(transaction=True)
def test_every_row_is_written_once_when_written_in_parts(harbor_search):
    for n in range(9):
        Room.objects.create(
            world=harbor_search, import_id=f"b{n}", name=f"Breakout {n}"
        )
    call("search", "index")
    assert not connection.in_atomic_block  # so the builds ran on their own connections

    results = services.index(reindex=True)

    assert {r.model: r.documents for r in results} == {
        "worlds": 1,
        "rooms": 11,
        "attendees": 2,
    }
    assert len(found("breakout")) == 9
    # One transaction switched every model.
    active = Generation.objects.filter(state="active")
    assert len({g.activated_at for g in active}) == 1
    assert not Generation.objects.filter(state="building").exists()
    with connection.cursor() as cursor:
        for g in active:
            cursor.execute(f'SELECT count(DISTINCT id), count(*) FROM "{g.table}"')
            distinct, total = cursor.fetchone()
            assert distinct == total == g.documents


@pytest.mark.django_db(transaction=True)
def test_a_failed_build_keeps_every_old_generation_and_leaves_no_tables(
    harbor_search, settings
):
    settings.SEARCH_MAX_FIELD_CHARS = 10_000_000  # let the whole text through
    call("search", "index")
    before = active_generations()
    tables = generation_tables()
    # More text than a tsvector holds (1 MB): PostgreSQL refuses this room's vector.
    words = " ".join(f"w{i:07d}" for i in range(120_000))
    Room.objects.bulk_create(
        [Room(world=harbor_search, import_id="huge", name="Huge", description=words)]
    )

    with pytest.raises(OperationalError, match="too long for tsvector"):
        services.index(reindex=True)

    # The worlds and attendees built fine on the other connection, and were dropped.
    assert active_generations() == before
    assert not Generation.objects.filter(state="building").exists()
    assert generation_tables() == tables
    assert found("keynotes") and found("grace")


@pytest.mark.django_db(transaction=True)
def test_next_switch_drops_abandoned_builds_but_not_running_ones(harbor_search):
    call("search", "index")
    eng = services.engine()
    built: dict[str, Generation] = {}
    running_started = threading.Event()
    release = threading.Event()

    def start_build(name: str, keep_running: bool) -> None:
        # Begins a build the way a reindex does: generation, lock, empty table.
        try:
            gen = Generation.objects.create(
                model="rooms",
                name=name,
                table=f"search_gen_{name.replace('-', '_')}",
                state="building",
                started_at=harbor_search.created_at,
            )
            with connection.cursor() as cursor:
                eng.lock_build(cursor, gen.pk)
                eng.create_table(cursor, gen.table, ROOMS)
            built[name] = gen
            if keep_running:
                running_started.set()
                release.wait(timeout=60)
        finally:
            connection.close()  # like a process that died: its lock goes with it

    dead = threading.Thread(target=start_build, args=("rooms-dead", False))
    dead.start()
    dead.join()
    running = threading.Thread(target=start_build, args=("rooms-running", True))
    running.start()
    try:
        assert running_started.wait(timeout=60)
        services.index(["rooms"], reindex=True)
        names = set(Generation.objects.values_list("name", flat=True))
        assert "rooms-dead" not in names
        assert "rooms-running" in names
        tables = generation_tables()
        assert built["rooms-dead"].table not in tables
        assert built["rooms-running"].table in tables
    finally:
        release.set()
        running.join(timeout=60)
