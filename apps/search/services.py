"""Search: build, update and query the full-text index of worlds, rooms and attendees.

Documents live in one table per model and generation (see ``models.Generation``).
``index(reindex=True)`` builds a complete new generation of each model beside the
live ones (on PostgreSQL on two connections at once) and then switches all of them in
one short transaction, dropping the old generations; searches keep being answered
from whichever generations are active. Writes that land while a generation is
being built go to the old one, so ``index`` reports how many rows changed since the
build started and the exact ``search index -f`` command that catches up.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from .engines import Engine, Hit, PostgresEngine, SqliteEngine, q
from .models import Generation
from .sources import SOURCES, Source, resolve

__all__ = [
    "Hit",
    "IndexNotBuilt",
    "IndexResult",
    "SearchUnavailable",
    "UnknownModel",
    "catch_up_command",
    "format_timestamp",
    "generations",
    "index",
    "model_names",
    "parse_timestamp",
    "query",
    "update_documents",
]

# Words, keeping dotted and hyphenated ones whole ("harbor.example", "e-mail"):
# PostgreSQL indexes a domain as one lexeme, which matches from its start.
TERM_RE = re.compile(r"[^\W_]+(?:[.@-][^\W_]+)*")


class SearchUnavailable(Exception):
    """The database cannot hold the index (SQLite without FTS5, another engine)."""


class UnknownModel(ValueError):
    pass


class IndexNotBuilt(Exception):
    pass


@dataclass
class IndexResult:
    model: str
    mode: str  # "reindex", "update" or "since"
    generation: str
    documents: int
    seconds: float
    started_at: dt.datetime
    replaced: str | None = None
    # Rows changed since the build started (reindex only): their documents may be
    # missing from the new generation until ``search index -f`` runs.
    changed: int = 0
    # Reindex only: time spent writing this model's documents and building its
    # indexes, summed over the connections that did it. ``seconds`` is the time
    # since the reindex began, and models are built at the same time.
    fill_seconds: float = 0.0
    index_seconds: float = 0.0


def model_names() -> list[str]:
    return list(SOURCES)


def singular(model: str) -> str:
    """``room`` for ``rooms``: the noun of one row of an indexed model."""
    return SOURCES[model].singular


def engine() -> Engine:
    """Return the index engine for the default database, or raise SearchUnavailable."""
    if connection.vendor == "postgresql":
        return PostgresEngine()
    if connection.vendor == "sqlite":
        if not _sqlite_has_fts5():
            raise SearchUnavailable(
                "This SQLite library was built without FTS5, so search is unavailable"
                " on it; use PostgreSQL (DATABASE_URL) or a Python whose SQLite has"
                " FTS5."
            )
        return SqliteEngine()
    raise SearchUnavailable(
        f"Search needs PostgreSQL or SQLite with FTS5; this database is "
        f"{connection.vendor}."
    )


def _sqlite_has_fts5() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA compile_options")
        return any("ENABLE_FTS5" in row[0] for row in cursor.fetchall())


def _sources(models: Iterable[str] | None) -> list[Source]:
    try:
        return resolve(list(models or []))
    except KeyError as exc:
        raise UnknownModel(
            f"There is no searchable model {exc.args[0]!r}; choose from "
            f"{', '.join(SOURCES)} (singular or plural)."
        ) from None


def _db_time(value: dt.datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def format_timestamp(value: dt.datetime) -> str:
    """Return ``value`` as UTC ISO 8601 to the second, for a command line."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(value: str) -> dt.datetime:
    """Return an aware datetime for ISO 8601 ``value`` (naive: the server's zone)."""
    try:
        moment = parse_datetime(value.strip())
        if moment is None:
            day = parse_date(value.strip())
            moment = None if day is None else dt.datetime(day.year, day.month, day.day)
    except ValueError:
        moment = None
    if moment is None:
        raise ValueError(
            f"Cannot read the timestamp {value!r}; use ISO 8601 such as "
            "2027-02-20T20:02:00Z."
        )
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


def _floor_second(value: dt.datetime) -> dt.datetime:
    return value.replace(microsecond=0)


# Index ---------------------------------------------------------------------------

# A reindex on PostgreSQL works on this many database connections at once: each
# model's documents are written in this many parts, and one model's GIN index is
# built while the next model's documents are written. Two keeps two server cores
# busy; a build on a small server should not take more.
BUILD_CONNECTIONS = 2


def index(
    models: Iterable[str] | None = None,
    *,
    reindex: bool = False,
    since: dt.datetime | None = None,
    after_build: Callable[[str], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[IndexResult]:
    """Index the named models (all when none) and return one result per model.

    ``reindex`` builds a new generation of every model and then switches all of them
    in one transaction: if any build fails, every model keeps its old generation and
    the new tables are dropped. Otherwise the live generation is updated in place,
    for every row or only rows modified at or after ``since``; a model with no
    generation yet gets its first one built. ``after_build(model)`` runs for each
    model between building and switching (tests use it to write meanwhile).
    ``progress(rows)`` is told of each part of the rows written, from any thread;
    ``rows_to_index`` tells how many there will be.
    """
    if reindex and since is not None:
        raise ValueError("A reindex always indexes every row; leave out the timestamp.")
    eng = engine()
    sources = _sources(models)
    active = set(
        Generation.objects.filter(
            model__in=[s.key for s in sources], state=Generation.State.ACTIVE
        ).values_list("model", flat=True)
    )
    rebuilt = [s for s in sources if reindex or s.key not in active]
    results = {r.model: r for r in _reindex(eng, rebuilt, after_build, progress)}
    for source in sources:
        if source.key not in results:
            results[source.key] = _update_in_place(eng, source, since, progress)
    return [results[s.key] for s in sources]


def _new_generation(source: Source, started: dt.datetime) -> Generation:
    base = f"{source.key}-{started.astimezone(dt.UTC):%Y-%m-%d-%H-%M}"
    for attempt in range(1, 1000):
        name = base if attempt == 1 else f"{base}-{attempt}"
        if Generation.objects.filter(name=name).exists():
            continue
        try:
            with transaction.atomic():
                return Generation.objects.create(
                    model=source.key,
                    name=name,
                    table="search_gen_" + name.replace("-", "_"),
                    state=Generation.State.BUILDING,
                    started_at=started,
                )
        except IntegrityError:  # another reindex took the name a moment ago
            continue
    raise RuntimeError(f"No free generation name for {base}")


@dataclass
class _Build:
    source: Source
    generation: Generation
    fill_seconds: float = 0.0
    index_seconds: float = 0.0
    # Whether this connection holds the build's lock (see Engine.lock_build).
    locked: bool = False
    changed: int = 0  # rows changed since the build began (see IndexResult)


def _reindex(
    eng: Engine,
    sources: list[Source],
    after_build: Callable[[str], None] | None,
    progress: Callable[[int], None] | None = None,
) -> list[IndexResult]:
    if not sources:
        return []
    clock = time.monotonic()
    started = timezone.now()
    builds: list[_Build] = []
    concurrent = _concurrent(eng)
    try:
        # On one connection the whole reindex is one transaction, so a failed or
        # killed one leaves nothing behind. Builds on several connections commit
        # their tables first; those are dropped here on failure, and by the next
        # switch if the process died.
        with nullcontext() if concurrent else transaction.atomic():
            _build_all(eng, sources, started, builds, concurrent, progress)
            if after_build is not None:
                for build in builds:
                    after_build(build.source.key)
            replaced = _switch(eng, builds)
    except BaseException:
        if concurrent:
            _discard(eng, builds)
        raise
    _unlock(eng, builds)
    replacing = [b for b in builds if replaced[b.source.key] is not None]
    if concurrent:
        _run_on_connections(
            [_Task(_after_switch, (eng, b, started)) for b in replacing]
        )
    else:
        for build in replacing:
            _after_switch(eng, build, started)
    return [
        IndexResult(
            model=build.source.key,
            mode="reindex",
            generation=build.generation.name,
            documents=build.generation.documents,
            seconds=time.monotonic() - clock,
            started_at=started,
            replaced=replaced[build.source.key],
            changed=build.changed,
            fill_seconds=build.fill_seconds,
            index_seconds=build.index_seconds,
        )
        for build in builds
    ]


def _concurrent(eng: Engine) -> bool:
    # Other connections cannot see the rows of this connection's transaction, so
    # inside one (tests, a caller's atomic block) all work stays on this one.
    return (
        eng.builds_concurrently
        and BUILD_CONNECTIONS > 1
        and not connection.in_atomic_block
    )


def _after_switch(eng: Engine, build: _Build, started: dt.datetime) -> None:
    source, gen = build.source, build.generation
    # Rows hard-deleted during the build lost their document only in the old
    # generation, and ``-f`` cannot find rows that are gone: drop them here.
    with transaction.atomic():
        live = _locked_active_table(source)
        if live is not None and live.pk == gen.pk:
            with connection.cursor() as cursor:
                eng.delete_missing(cursor, gen.table, source)
    # Exactly the rows written since the build began; the printed catch-up
    # command rounds down to the second, which only re-indexes a few rows more.
    build.changed = _changed_since(source, started)


def _build_all(
    eng: Engine,
    sources: list[Source],
    started: dt.datetime,
    builds: list[_Build],
    concurrent: bool,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Build a new generation of each source, appending each to ``builds``."""
    if not concurrent:
        for source in sources:
            build = _Build(source, _new_generation(source, started))
            table = build.generation.table
            with connection.cursor() as cursor:
                eng.create_table(cursor, table, source)
                clock = time.monotonic()
                build.generation.documents = eng.fill(cursor, table, source)
                build.fill_seconds = time.monotonic() - clock
                if progress is not None:
                    progress(build.generation.documents)
                for step in eng.finish_steps(table):
                    step(cursor)
                build.index_seconds = time.monotonic() - clock - build.fill_seconds
            build.generation.save(update_fields=["documents"])
            builds.append(build)
        return
    # Largest model first: its GIN index build then overlaps the smaller ones'
    # writes. The short steps come last, to fill the gaps at the end.
    with connection.cursor() as cursor:
        sizes = eng.estimated_rows(cursor, sources)
    tasks: list[_Task] = []
    short_steps: list[_Task] = []
    for source in sorted(sources, key=lambda s: -sizes.get(s.key, 0)):
        # The empty table is committed at once so that the other connections can
        # write into it; the lock tells a later reindex that it is still being
        # built (an abandoned one is dropped by the next switch).
        with transaction.atomic():
            build = _Build(source, _new_generation(source, started))
            with connection.cursor() as cursor:
                build.locked = eng.lock_build(cursor, build.generation.pk)
                eng.create_table(cursor, build.generation.table, source)
        builds.append(build)
        with connection.cursor() as cursor:
            parts = eng.fill_parts(cursor, source, BUILD_CONNECTIONS)
        fills = [
            _Task(_fill_part, (eng, build, where, params, progress))
            for where, params in parts
        ]
        steps = [
            _Task(_finish_step, (build, step), after=fills)
            for step in eng.finish_steps(build.generation.table)
        ]
        tasks += fills + steps[:1]
        short_steps += steps[1:]
    _run_on_connections(tasks + short_steps)
    for build in builds:
        build.generation.save(update_fields=["documents"])
    builds.sort(key=lambda b: sources.index(b.source))


def _fill_part(
    eng: Engine,
    build: _Build,
    where: str,
    params: list,
    progress: Callable[[int], None] | None = None,
) -> None:
    clock = time.monotonic()
    with connection.cursor() as cursor:
        count = eng.fill(cursor, build.generation.table, build.source, where, params)
    with _build_lock:
        build.generation.documents += count
        build.fill_seconds += time.monotonic() - clock
    if progress is not None:
        progress(count)


def _finish_step(build: _Build, step: Callable[[Any], None]) -> None:
    clock = time.monotonic()
    with connection.cursor() as cursor:
        step(cursor)
    with _build_lock:
        build.index_seconds += time.monotonic() - clock


_build_lock = threading.Lock()


@dataclass(eq=False)
class _Task:
    func: Callable[..., None]
    args: tuple
    after: list[_Task] = field(default_factory=list)
    done: bool = False


def _run_on_connections(tasks: list[_Task]) -> None:
    """Run ``tasks`` on BUILD_CONNECTIONS threads, each with its own connection.

    A free thread takes the first task in the list whose ``after`` tasks are done.
    After a failure no task starts; the first failure is raised once every thread
    has finished its running task.
    """
    pending = list(tasks)
    failures: list[BaseException] = []
    changed = threading.Condition()

    def next_task() -> _Task | None:
        with changed:
            while pending and not failures:
                for task in pending:
                    if all(t.done for t in task.after):
                        pending.remove(task)
                        return task
                changed.wait()
            return None

    def work() -> None:
        try:
            while (task := next_task()) is not None:
                try:
                    task.func(*task.args)
                except BaseException as exc:
                    with changed:
                        failures.append(exc)
                        changed.notify_all()
                    return
                with changed:
                    task.done = True
                    changed.notify_all()
        finally:
            connection.close()  # this thread's own

    threads = [
        threading.Thread(target=work, name=f"search-build-{n}")
        for n in range(min(BUILD_CONNECTIONS, len(tasks)))
    ]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except BaseException as exc:  # interrupted: let running statements finish
        with changed:
            failures.append(exc)
            changed.notify_all()
        for thread in threads:
            thread.join()
    if failures:
        raise failures[0]


def _unlock(eng: Engine, builds: list[_Build]) -> None:
    with connection.cursor() as cursor:
        for build in builds:
            if build.locked:
                eng.unlock_build(cursor, build.generation.pk)
                build.locked = False


def _discard(eng: Engine, builds: list[_Build]) -> None:
    """Drop generations that were built (or begun) but never switched to."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            for build in builds:
                eng.drop_table(cursor, build.generation.table)
        Generation.objects.filter(
            pk__in=[b.generation.pk for b in builds], state=Generation.State.BUILDING
        ).delete()
    _unlock(eng, builds)


def _switch(eng: Engine, builds: list[_Build]) -> dict[str, str | None]:
    """Make the built generations active, all in one transaction.

    Return the name of the generation each replaced, by model.
    """
    by_model = {b.source.key: b for b in builds}
    replaced: dict[str, str | None] = dict.fromkeys(by_model)
    with transaction.atomic():
        # Waits for in-flight document updates, which hold these rows FOR SHARE;
        # locked in one order, so two switches cannot deadlock each other.
        old_generations = {
            old.model: old
            for old in Generation.objects.select_for_update()
            .filter(model__in=by_model, state=Generation.State.ACTIVE)
            .order_by("model")
        }
        now = timezone.now()
        with connection.cursor() as cursor:
            # Views and tables in the order searches lock them (SOURCES): a search
            # still reading an old table holds its view, so the switch waits there
            # and never holds a lock that search wants next.
            for key in (k for k in SOURCES if k in by_model):
                build = by_model[key]
                old = old_generations.get(key)
                if old is not None:
                    replaced[key] = old.name
                    old.delete()
                gen = build.generation
                gen.state = Generation.State.ACTIVE
                gen.activated_at = now
                gen.save(update_fields=["state", "activated_at"])
                eng.activate(cursor, gen.table, build.source)
                if old is not None:
                    eng.drop_table(cursor, old.table)
            # Builds that crashed before their switch: generations whose build
            # nobody holds any more, and tables without a generation.
            abandoned = (
                Generation.objects.filter(
                    model__in=by_model, state=Generation.State.BUILDING
                )
                .exclude(pk__in=[b.generation.pk for b in builds])
                .values_list("pk", flat=True)
            )
            Generation.objects.filter(
                pk__in=[pk for pk in abandoned if eng.build_abandoned(cursor, pk)]
            ).delete()
            known = set(Generation.objects.values_list("table", flat=True))
            prefixes = tuple(f"search_gen_{key}_" for key in by_model)
            for table in eng.generation_tables(cursor):
                if table.startswith(prefixes) and table not in known:
                    eng.drop_table(cursor, table)
    return replaced


def _changed_since(source: Source, since: dt.datetime) -> int:
    qs = source.model._default_manager.filter(updated_at__gte=since)
    if source.key == "attendees":
        qs = qs.filter(world__isnull=False)
    return qs.count()


def _locked_active_table(source: Source) -> Generation | None:
    """Return the active generation, holding it so no switch drops it under us."""
    lock = " FOR SHARE" if connection.vendor == "postgresql" else ""
    sql = (
        f"SELECT id FROM {q(Generation._meta.db_table)} "
        f"WHERE model = %s AND state = %s{lock}"
    )
    # A switch committing while we wait makes the row we waited for inactive;
    # the next statement sees the new active one.
    for _ in range(5):
        with connection.cursor() as cursor:
            cursor.execute(sql, [source.key, Generation.State.ACTIVE])
            row = cursor.fetchone()
        if row is not None:
            return Generation.objects.get(pk=row[0])
        if not Generation.objects.filter(
            model=source.key, state=Generation.State.ACTIVE
        ).exists():
            return None
    return None


def _since_filter(source: Source, since: dt.datetime | None) -> tuple[str, list]:
    if since is None:
        return "", []
    return f"{source.alias}.updated_at >= %s", [_db_time(since)]


def rows_to_index(
    models: Iterable[str] | None = None,
    *,
    reindex: bool = False,
    since: dt.datetime | None = None,
) -> int:
    """Return how many rows ``index`` with the same arguments will write: counted
    with each model's own query, so a progress bar ends where the index does."""
    sources = _sources(models)
    active = set(
        Generation.objects.filter(
            model__in=[s.key for s in sources], state=Generation.State.ACTIVE
        ).values_list("model", flat=True)
    )
    total = 0
    with connection.cursor() as cursor:
        for source in sources:
            rebuilt = reindex or source.key not in active
            where, params = _since_filter(source, None if rebuilt else since)
            cursor.execute(
                f"SELECT count(*) FROM ({source.sql(connection.vendor, where)}) rows_",
                params,
            )
            total += cursor.fetchone()[0]
    return total


def _update_in_place(
    eng: Engine,
    source: Source,
    since: dt.datetime | None,
    progress: Callable[[int], None] | None = None,
) -> IndexResult:
    clock = time.monotonic()
    started = timezone.now()
    where, params = _since_filter(source, since)
    with transaction.atomic():
        gen = _locked_active_table(source)
        if gen is None:  # removed since index() looked
            raise IndexNotBuilt(
                f"The {source.key} index vanished; run the command again."
            )
        with connection.cursor() as cursor:
            eng.delete(cursor, gen.table, source, where, params)
            count = eng.fill(cursor, gen.table, source, where, params)
        if progress is not None:
            progress(count)
        if since is None:
            gen.documents = count
            gen.save(update_fields=["documents"])
    return IndexResult(
        model=source.key,
        mode="since" if since is not None else "update",
        generation=gen.name,
        documents=count,
        seconds=time.monotonic() - clock,
        started_at=started,
    )


def update_documents(model: str, ids: Iterable[Any]) -> int:
    """Bring the documents of these rows up to date; return how many exist now.

    Rows that are gone, soft-deleted or not searchable lose their document. Does
    nothing while the model has no index generation or the database cannot search.
    """
    source = _sources([model])[0]
    pk = source.model._meta.pk
    ids = [pk.to_python(value) for value in ids]
    if not ids:
        return 0
    try:
        eng = engine()
    except SearchUnavailable:
        return 0
    where = f"{source.alias}.id IN ({', '.join(['%s'] * len(ids))})"
    with transaction.atomic():
        gen = _locked_active_table(source)
        if gen is None:
            return 0
        with connection.cursor() as cursor:
            _delete_ids(eng, cursor, gen.table, source, ids)
            return eng.fill(cursor, gen.table, source, where, ids)


def _delete_ids(eng: Engine, cursor, table: str, source: Source, ids: list) -> None:
    # By id, not through the source table: hard-deleted rows are no longer there.
    marks = ", ".join(["%s"] * len(ids))
    if isinstance(eng, SqliteEngine):
        if eng.integer_ids(source):
            cursor.execute(f"DELETE FROM {q(table)} WHERE rowid IN ({marks})", ids)
        else:
            cursor.execute(
                f"DELETE FROM {q(table)} WHERE doc_id IN ({marks})",
                [str(i) for i in ids],
            )
    else:
        cursor.execute(f"DELETE FROM {q(table)} WHERE id IN ({marks})", ids)


def catch_up_command(results: list[IndexResult]) -> str | None:
    """Return the command that indexes rows changed during these reindexes, if any."""
    changed = [r for r in results if r.changed]
    if not changed:
        return None
    since = _floor_second(min(r.started_at for r in changed))
    models = " ".join(r.model for r in changed)
    return f"python manage.py search index {models} -f {format_timestamp(since)}"


# Query ---------------------------------------------------------------------------


def terms_of(text: str) -> list[str]:
    return TERM_RE.findall(text.lower())


def query(
    text: str,
    *,
    models: Iterable[str] | None = None,
    world: str | None = None,
    limit: int = 20,
) -> list[Hit]:
    """Return the best ``limit`` documents matching every word of ``text``.

    Words match as prefixes, case and accents ignored. Soft-deleted rows and the
    rooms and attendees of soft-deleted worlds are never returned.
    """
    terms = terms_of(text)
    if not terms:
        raise ValueError("Give at least one word to search for.")
    if limit < 1:
        raise ValueError("The limit must be at least 1.")
    sources = _sources(models)
    eng = engine()
    hits: list[Hit] = []
    # One transaction: on SQLite, the generation read and the search see the same
    # snapshot even if a switch commits in between.
    with transaction.atomic():
        active = dict(
            Generation.objects.filter(
                model__in=[s.key for s in sources], state=Generation.State.ACTIVE
            ).values_list("model", "table")
        )
        if not active:
            raise IndexNotBuilt(
                "The search index has not been built yet; build it with: "
                "python manage.py search index"
            )
        with connection.cursor() as cursor:
            for source in sources:
                if source.key in active:
                    hits += eng.search(
                        cursor, active[source.key], source, terms, world, limit
                    )
    hits.sort(key=lambda h: -h.rank)
    return hits[:limit]


def generations() -> list[dict[str, Any]]:
    """Return every generation, active and being built, for status displays."""
    return [
        {
            "model": g.model,
            "generation": g.name,
            "state": g.state,
            "documents": g.documents,
            "started_at": g.started_at,
            "activated_at": g.activated_at,
        }
        for g in Generation.objects.all()
    ]
