"""Reindexing while searches run: every search is answered, and never empty."""

import threading

import pytest
from django.db import connection

from apps.search import services
from apps.search.models import Generation

from .conftest import run

pytestmark = pytest.mark.postgres


@pytest.mark.django_db(transaction=True)
def test_searches_keep_answering_during_reindex(harbor):
    run("index")
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
    tables = services.engine().generation_tables(connection.cursor())
    assert sorted(tables) == sorted(Generation.objects.values_list("table", flat=True))
