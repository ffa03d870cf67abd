"""The SQL of the index on each database: PostgreSQL full text, SQLite FTS5.

Both keep one document table per generation. On PostgreSQL the active generation is
also reachable through a view (``search_live_rooms``); searches read the view, so a
reindex that switches generations never leaves a search looking for a dropped table
(replacing the view waits for running searches, and searches that start meanwhile
wait for the switch to commit and then read the new table).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import connection
from django.db.models import AutoField, BigAutoField, SmallAutoField

from .sources import Source

# A copy of PostgreSQL's language-agnostic 'simple' configuration that also strips
# accents (ü → u, é → e, ß → ss) when the unaccent extension exists; created by the
# search app's first migration.
TS_CONFIG = "stagehand_search"
HEADLINE_OPTIONS = (
    'StartSel="**", StopSel="**", MaxWords=18, MinWords=6, '
    'MaxFragments=2, FragmentDelimiter=" … "'
)


@dataclass(frozen=True)
class Hit:
    model: str
    id: str
    world: str
    title: str
    snippet: str
    rank: float


# Ranking reads every matching document. A word that matches a third of a million
# documents would cost seconds, so PostgreSQL ranks at most this many matches per
# model (the first found) and returns the best of those; more words narrow a search.
RANK_CANDIDATES = 5000


def q(name: str) -> str:
    return connection.ops.quote_name(name)


def placeholders(values: Sequence[Any]) -> str:
    return ", ".join(["%s"] * len(values))


def worlds_table() -> str:
    return q(apps.get_model("worlds", "World")._meta.db_table)


class Engine:
    vendor = ""
    # Whether a reindex may write one table from several connections at once.
    builds_concurrently = False

    def create_table(self, cursor, table: str, source: Source) -> None:
        raise NotImplementedError

    def fill(
        self, cursor, table: str, source: Source, where: str = "", params=()
    ) -> int:
        raise NotImplementedError

    def fill_parts(
        self, cursor, source: Source, parts: int
    ) -> list[tuple[str, list[Any]]]:
        """Return ``(where, params)`` for ``fill`` that split the rows into parts."""
        return [("", [])]

    def finish_steps(self, table: str) -> list[Callable[[Any], None]]:
        """Return what completes a filled table, as steps that may run at once.

        Each step takes a cursor; the longest comes first.
        """
        return []

    def lock_build(self, cursor, generation: int) -> bool:
        """Mark the generation as being built by this connection, if supported."""
        return False

    def unlock_build(self, cursor, generation: int) -> None:
        pass

    def build_abandoned(self, cursor, generation: int) -> bool:
        """Return whether the generation's build is known to have died."""
        return False

    def activate(self, cursor, table: str, source: Source) -> None:
        pass

    def delete(self, cursor, table: str, source: Source, where: str, params) -> None:
        """Delete the documents of source rows matching ``where`` (or all)."""
        raise NotImplementedError

    def delete_missing(self, cursor, table: str, source: Source) -> int:
        """Delete documents whose row is gone (hard-deleted during a build)."""
        raise NotImplementedError

    def search(
        self,
        cursor,
        table: str,
        source: Source,
        terms: list[str],
        world: str | None,
        limit: int,
    ) -> list[Hit]:
        raise NotImplementedError

    def generation_tables(self, cursor) -> list[str]:
        raise NotImplementedError

    def estimated_rows(self, cursor, sources: Sequence[Source]) -> dict[str, float]:
        """Return the planner's row estimate of each source's table, by key."""
        return {}

    def drop_table(self, cursor, table: str) -> None:
        cursor.execute(f"DROP TABLE IF EXISTS {q(table)}")


class PostgresEngine(Engine):
    vendor = "postgresql"
    builds_concurrently = True

    def create_table(self, cursor, table: str, source: Source) -> None:
        pk = source.model._meta.pk.rel_db_type(connection)
        world_pk = apps.get_model("worlds", "World")._meta.pk.rel_db_type(connection)
        # CASCADE: a leftover table of the same name may still back the live view.
        cursor.execute(f"DROP TABLE IF EXISTS {q(table)} CASCADE")
        cursor.execute(
            f"CREATE TABLE {q(table)} (id {pk} NOT NULL, world_id {world_pk} NOT NULL,"
            " title text NOT NULL, body text NOT NULL, vector tsvector NOT NULL)"
        )

    def fill(
        self, cursor, table: str, source: Source, where: str = "", params=()
    ) -> int:
        # OFFSET 0 keeps the source a subquery of its own: flattened into this
        # SELECT, each text column's expression (a correlated aggregate over JSON
        # for markdown pages and profile fields) would run once for the body and
        # once more for the vector. Measured at 100,000 attendees: 1.88 s → 1.50 s.
        # Only the first SEARCH_MAX_FIELD_CHARS of each text: PostgreSQL refuses a
        # tsvector over 1 MB, which would fail the whole INSERT and so the reindex.
        n = int(settings.SEARCH_MAX_FIELD_CHARS)
        a, b, c = (f"left(coalesce({col}, ''), {n})" for col in "abc")
        cursor.execute(
            f"""
            INSERT INTO {q(table)} (id, world_id, title, body, vector)
            SELECT id, world_id, title,
                   concat_ws(E'\\n', nullif({a}, ''), nullif({b}, ''), nullif({c}, '')),
                   setweight(to_tsvector('{TS_CONFIG}', {a}), 'A')
                   || setweight(to_tsvector('{TS_CONFIG}', {b}), 'B')
                   || setweight(to_tsvector('{TS_CONFIG}', {c}), 'C')
            FROM ({source.sql(self.vendor, where)} OFFSET 0) s
            """,
            list(params),
        )
        return cursor.rowcount

    def fill_parts(self, cursor, source: Source, parts: int):
        # Split at ids that many rows apart (the primary key index finds them),
        # counting on the planner's row estimate, or on count(*) when it has none.
        table = q(source.model._meta.db_table)
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [table]
        )
        rows = cursor.fetchone()[0]
        if rows <= 0:
            cursor.execute(f"SELECT count(*) FROM {table}")
            rows = cursor.fetchone()[0]
        bounds: list[Any] = []
        for part in range(1, parts):
            cursor.execute(
                f"SELECT id FROM {table} ORDER BY id OFFSET %s LIMIT 1",
                [rows * part // parts],
            )
            row = cursor.fetchone()
            if row is not None and (not bounds or row[0] > bounds[-1]):
                bounds.append(row[0])
        # The first and last parts are open-ended: rows added meanwhile belong
        # to one of them.
        edges = [None, *bounds, None]
        ranges = []
        for low, high in zip(edges, edges[1:], strict=False):
            where, params = [], []
            if low is not None:
                where.append(f"{source.alias}.id >= %s")
                params.append(low)
            if high is not None:
                where.append(f"{source.alias}.id < %s")
                params.append(high)
            ranges.append((" AND ".join(where), params))
        return ranges

    def finish_steps(self, table: str):
        # Indexes after the bulk load: building them once is far cheaper than
        # maintaining them row by row. Two steps that can run at the same time:
        # the GIN index takes long, the b-trees do not (and ANALYZE would wait for
        # a b-tree build on another connection, so it follows the GIN index).
        t = q(table)

        def gin(cursor) -> None:
            cursor.execute(f"CREATE INDEX ON {t} USING gin (vector)")
            # Statistics for what searches filter on; the snippet text needs none.
            cursor.execute(f"ANALYZE {t} (id, world_id, vector)")

        def btrees(cursor) -> None:
            # A unique index, not a primary key: adding a constraint would lock
            # out the GIN index build running beside it.
            cursor.execute(f"CREATE UNIQUE INDEX ON {t} (id)")
            cursor.execute(f"CREATE INDEX ON {t} (world_id)")

        return [gin, btrees]

    # Session advisory locks (key BUILD_LOCK, generation id): held by the
    # connection that started a build until its switch, released by PostgreSQL
    # when that connection ends, however the process died.
    BUILD_LOCK = 0x5EA4C4

    def lock_build(self, cursor, generation: int) -> bool:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", [self.BUILD_LOCK, generation])
        return True

    def unlock_build(self, cursor, generation: int) -> None:
        cursor.execute(
            "SELECT pg_advisory_unlock(%s, %s)", [self.BUILD_LOCK, generation]
        )

    def build_abandoned(self, cursor, generation: int) -> bool:
        # Held until the end of the caller's transaction if nobody else holds it.
        cursor.execute(
            "SELECT pg_try_advisory_xact_lock(%s, %s)", [self.BUILD_LOCK, generation]
        )
        return cursor.fetchone()[0]

    def activate(self, cursor, table: str, source: Source) -> None:
        cursor.execute(
            f"CREATE OR REPLACE VIEW {q(live_view(source))} AS "
            f"SELECT id, world_id, title, body, vector FROM {q(table)}"
        )

    def delete(self, cursor, table: str, source: Source, where: str, params) -> None:
        if not where:
            cursor.execute(f"DELETE FROM {q(table)}")
            return
        cursor.execute(
            f"DELETE FROM {q(table)} WHERE id IN (SELECT {source.alias}.id "
            f"FROM {q(source.model._meta.db_table)} {source.alias} WHERE {where})",
            list(params),
        )

    def delete_missing(self, cursor, table: str, source: Source) -> int:
        cursor.execute(
            f"DELETE FROM {q(table)} d WHERE NOT EXISTS (SELECT 1 FROM "
            f"{q(source.model._meta.db_table)} s WHERE s.id = d.id)"
        )
        return cursor.rowcount

    def search(self, cursor, table, source, terms, world, limit) -> list[Hit]:
        tsquery = " & ".join(f"{t}:*" for t in terms)
        world_filter = "AND d.world_id = %s" if world else ""
        # The tsquery is written out (not a CTE) so the planner estimates it from
        # the vector statistics; deleted worlds are a hashed NOT IN, so the match is
        # scanned once whatever the planner knows about the worlds table.
        cursor.execute(
            f"""
            SELECT top.id::text, top.world_id::text, top.title,
                   ts_headline('{TS_CONFIG}', top.body,
                               to_tsquery('{TS_CONFIG}', %s), '{HEADLINE_OPTIONS}'),
                   top.rank
            FROM (
                SELECT d.id, d.world_id, d.title, d.body,
                       ts_rank(d.vector, to_tsquery('{TS_CONFIG}', %s)) AS rank
                FROM (
                    SELECT * FROM {q(live_view(source))} d
                    WHERE d.vector @@ to_tsquery('{TS_CONFIG}', %s)
                      AND d.world_id NOT IN (
                          SELECT w.id FROM {worlds_table()} w
                          WHERE w.deleted_at IS NOT NULL)
                      {world_filter}
                    LIMIT %s
                ) d
                ORDER BY rank DESC, d.id
                LIMIT %s
            ) top
            ORDER BY top.rank DESC, top.id
            """,
            [
                tsquery,
                tsquery,
                tsquery,
                *([world] if world else []),
                RANK_CANDIDATES,
                limit,
            ],
        )
        return [Hit(source.singular, *row) for row in cursor.fetchall()]

    def generation_tables(self, cursor) -> list[str]:
        cursor.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            " AND tablename LIKE 'search\\_gen\\_%%'"
        )
        return [row[0] for row in cursor.fetchall()]

    def estimated_rows(self, cursor, sources: Sequence[Source]) -> dict[str, float]:
        tables = {s.model._meta.db_table: s.key for s in sources}
        cursor.execute(
            "SELECT t, c.reltuples FROM unnest(%s::text[]) t"
            " JOIN pg_class c ON c.oid = to_regclass(quote_ident(t))",
            [list(tables)],
        )
        # reltuples is -1 for a table never vacuumed or analyzed.
        return {tables[name]: max(rows, 0) for name, rows in cursor.fetchall()}

    def drop_table(self, cursor, table: str) -> None:
        cursor.execute(f"DROP TABLE IF EXISTS {q(table)} CASCADE")


class SqliteEngine(Engine):
    """FTS5 tables; ``remove_diacritics 2`` folds accents and umlauts (ü → u)."""

    vendor = "sqlite"

    @staticmethod
    def integer_ids(source: Source) -> bool:
        return isinstance(
            source.model._meta.pk, AutoField | BigAutoField | SmallAutoField
        )

    def create_table(self, cursor, table: str, source: Source) -> None:
        cursor.execute(f"DROP TABLE IF EXISTS {q(table)}")
        cursor.execute(
            f"CREATE VIRTUAL TABLE {q(table)} USING fts5(a, b, c, title UNINDEXED,"
            " world_id UNINDEXED, doc_id UNINDEXED,"
            " tokenize = 'unicode61 remove_diacritics 2')"
        )

    def fill(
        self, cursor, table: str, source: Source, where: str = "", params=()
    ) -> int:
        # Integer ids double as FTS5 rowids, so updates find documents by rowid.
        rowid = "rowid, " if self.integer_ids(source) else ""
        rowid_value = "id, " if rowid else ""
        cursor.execute(
            f"INSERT INTO {q(table)} ({rowid}doc_id, world_id, title, a, b, c) "
            f"SELECT {rowid_value}CAST(id AS TEXT), world_id, title,"
            " coalesce(a, ''), coalesce(b, ''), coalesce(c, '')"
            f" FROM ({source.sql(self.vendor, where)}) s",
            list(params),
        )
        return cursor.rowcount

    def finish_steps(self, table: str):
        def optimize(cursor) -> None:
            cursor.execute(f"INSERT INTO {q(table)}({q(table)}) VALUES ('optimize')")

        return [optimize]

    def delete(self, cursor, table: str, source: Source, where: str, params) -> None:
        if not where:
            cursor.execute(f"DELETE FROM {q(table)}")
            return
        column, ids = self._doc_key(source, f"{source.alias}.id")
        cursor.execute(
            f"DELETE FROM {q(table)} WHERE {column} IN (SELECT "
            f"{ids} FROM {q(source.model._meta.db_table)} "
            f"{source.alias} WHERE {where})",
            list(params),
        )

    def _doc_key(self, source: Source, id_column: str) -> tuple[str, str]:
        """Return the document table's key column and the source's matching value:
        integer ids are FTS5 rowids, others are stored as text in doc_id."""
        if self.integer_ids(source):
            return "rowid", id_column
        return "doc_id", f"CAST({id_column} AS TEXT)"

    def delete_missing(self, cursor, table: str, source: Source) -> int:
        column, ids = self._doc_key(source, "id")
        cursor.execute(
            f"DELETE FROM {q(table)} WHERE {column} NOT IN "
            f"(SELECT {ids} FROM {q(source.model._meta.db_table)})"
        )
        return cursor.rowcount

    def search(self, cursor, table, source, terms, world, limit) -> list[Hit]:
        match = " AND ".join(f'"{t}"*' for t in terms)
        t = q(table)
        world_filter = f"AND {t}.world_id = %s" if world else ""
        params: list[Any] = [match, *([world] if world else []), limit]
        cursor.execute(
            f"""
            SELECT {t}.doc_id, {t}.world_id, {t}.title,
                   snippet({t}, -1, '**', '**', '…', 12),
                   -bm25({t}, 10.0, 4.0, 1.0) AS rank
            FROM {t} JOIN {worlds_table()} w ON w.id = {t}.world_id
            WHERE {t} MATCH %s AND w.deleted_at IS NULL {world_filter}
            ORDER BY rank DESC, {t}.doc_id
            LIMIT %s
            """,
            params,
        )
        return [Hit(source.singular, *row) for row in cursor.fetchall()]

    def generation_tables(self, cursor) -> list[str]:
        cursor.execute(
            # Only the FTS5 tables themselves, not their shadow tables (_data, …).
            "SELECT name FROM sqlite_master WHERE type = 'table'"
            " AND name LIKE 'search\\_gen\\_%%' ESCAPE '\\'"
            " AND sql LIKE 'CREATE VIRTUAL TABLE%%'"
        )
        return [row[0] for row in cursor.fetchall()]


def live_view(source: Source) -> str:
    return f"search_live_{source.key}"
