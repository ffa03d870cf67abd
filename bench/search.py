"""Benchmark: reindex throughput and query latency of the PostgreSQL search index.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/stagehand \\
        .venv/bin/python bench/search.py --size 1000000

Creates a throwaway database (``bench_<name>``, dropped afterwards), fills it with
``--size`` documents (half rooms, half attendees, over 100 worlds, text drawn from a
27,000-word vocabulary with a skewed distribution), then measures in one run:

* anchor: a raw ``INSERT … SELECT id, to_tsvector(…)`` of the same rows' text into a
  bare table (no weights, no snippet text, no indexes), run before and after ours;
* ours: ``search index rooms attendees --reindex`` (weighted vectors, snippet text,
  id, GIN and world indexes, ANALYZE, switch, drop of the old generation), on
  ``--connections`` database connections (the service's default: 2);
* query latency (p50/p95) of ``services.query`` for whole words and for 3-letter
  prefixes, on the result.

Prints throughput as a ratio against the anchor (target ≥ 0.5) and the latencies
(target p95 < 50 ms), with the load average beside the timed runs: other processes
on the machine slow both sides, but not equally.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")

import django  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import setup_databases, teardown_databases  # noqa: E402

SYLLABLES = (
    "ba be bi bo bu da de di do du ka ke ki ko ku la le li lo lu "
    "ma me mi mo mu na ne ni no nu"
).split()
FIRST = (
    "Ada Grace Hedy Alan Linus Barbara Edsger Margaret Ken Dennis Frances Jean".split()
)
LAST = (
    "Lovelace Hopper Lamarr Turing Torvalds Liskov Dijkstra Hamilton Thompson".split()
)


def vocabulary() -> list[str]:
    return [a + b + c for a in SYLLABLES for b in SYLLABLES for c in SYLLABLES]


def fill(cursor, size: int) -> None:
    rooms, attendees = size // 2, size - size // 2
    cursor.execute(
        """
        INSERT INTO worlds_world (id, title, domain, config, roles, trait_grants,
            extra, locale, timezone, created_at, updated_at)
        SELECT 'bench' || i, 'Bench World ' || i, 'bench' || i || '.example.org',
               '{"profile_fields": [{"id": "org", "type": "text", "searchable": true},
                 {"id": "phone", "type": "text", "searchable": false}]}',
               '{}', '{}', '{}', 'en', 'UTC', now(), now()
        FROM generate_series(0, 99) i
        """
    )

    # A word is three of 30 syllables (27,000 words); k = random()^2 skews choices
    # towards the start of the vocabulary, as in real text. A 30-element array stays
    # small: subscripting the whole 27,000-word list per pick would detoast it.
    def word(k: str) -> str:
        return f"(s[1 + ({k}) / 900] || s[1 + ({k}) / 30 %% 30] || s[1 + ({k}) %% 30])"

    skew = "floor(random() ^ 2 * 27000)::int"
    pick = f"(SELECT {word('k')} FROM (SELECT {skew} AS k) x)"
    # Mentions g, so the aggregate belongs to the subquery and runs once per row.
    pick_g = f"(SELECT {word('k')} FROM (SELECT {skew} + 0 * g AS k) x)"
    cursor.execute(
        f"""
        INSERT INTO worlds_room (import_id, name, description, sorting_priority,
            modules, trait_grants, extra, updated_at, world_id)
        SELECT 'r' || i, initcap({pick}) || ' ' || initcap({pick}),
               (SELECT string_agg({pick_g}, ' ') FROM generate_series(1, 12 + 0 * i) g),
               0,
               CASE WHEN i %% 10 = 0 THEN jsonb_build_array(jsonb_build_object(
                   'type', 'page.markdown', 'config', jsonb_build_object('content',
                   (SELECT '# ' || string_agg({pick_g}, ' ')
                    FROM generate_series(1, 30 + 0 * i) g))))
               ELSE '[]'::jsonb END,
               '{{}}', '{{}}', now(), 'bench' || (i %% 100)
        FROM generate_series(1, %s) i, (SELECT %s::text[] AS s) v
        """,
        [rooms, SYLLABLES],
    )
    cursor.execute(
        f"""
        INSERT INTO accounts_user (password, is_superuser, username, first_name,
            last_name, is_staff, is_active, date_joined, email, display_name, traits,
            profile, token_id, world_id, avatar, updated_at)
        SELECT '!', false, 'bench.' || i, '', '', false, true, now(), '',
               f[1 + i %% array_length(f, 1)] || ' ' || l[1 + (i / 7) %% array_length(l, 1)]
                   || ' ' || initcap({pick}),
               '[]', jsonb_build_object('org', initcap({pick}) || ' ' || {pick},
                                        'phone', (i::bigint * 7919)::text),
               i::text, 'bench' || (i %% 100), '', now()
        FROM generate_series(1, %s) i,
             (SELECT %s::text[] AS s, %s::text[] AS f, %s::text[] AS l) v
        """,
        [attendees, SYLLABLES, FIRST, LAST],
    )
    cursor.execute("VACUUM ANALYZE worlds_room")
    cursor.execute("VACUUM ANALYZE accounts_user")


def raw_anchor(cursor, config: str, with_gin: bool = False) -> tuple[float, float]:
    """Return seconds for the raw INSERT…SELECT, and for a GIN index on it (or 0)."""
    cursor.execute("DROP TABLE IF EXISTS bench_raw")
    cursor.execute("CREATE TABLE bench_raw (id bigint, vector tsvector)")
    start = time.perf_counter()
    cursor.execute(
        f"""INSERT INTO bench_raw SELECT id, to_tsvector('{config}',
            name || ' ' || description || ' ' || modules::text) FROM worlds_room"""
    )
    cursor.execute(
        f"""INSERT INTO bench_raw SELECT id, to_tsvector('{config}',
            display_name || ' ' || profile::text) FROM accounts_user"""
    )
    seconds = time.perf_counter() - start
    gin = 0.0
    if with_gin:
        start = time.perf_counter()
        cursor.execute("CREATE INDEX ON bench_raw USING gin (vector)")
        gin = time.perf_counter() - start
    cursor.execute("DROP TABLE bench_raw")
    return seconds, gin


def load() -> float:
    return os.getloadavg()[0]


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def latencies(query: Callable[..., object], texts: list[str]) -> list[float]:
    times = []
    for text in texts:
        start = time.perf_counter()
        query(text, limit=20)
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="documents")
    parser.add_argument("--queries", type=int, default=200, help="per query kind")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument(
        "--connections",
        type=int,
        help="database connections of the reindex (default: the service's own; "
        "1 builds one model after the other on one connection, as before)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the database afterwards, to explore"
    )
    args = parser.parse_args()

    django.setup()
    # The project's modules import their models: only once Django is set up, here.
    from apps.search import services  # noqa: PLC0415
    from apps.search.engines import TS_CONFIG  # noqa: PLC0415

    if connection.vendor != "postgresql":
        sys.exit("bench/search.py measures PostgreSQL: set DATABASE_URL=postgres://…")
    connection.settings_dict.setdefault("TEST", {})["NAME"] = (
        "bench_" + connection.settings_dict["NAME"]
    )
    if args.connections:
        services.BUILD_CONNECTIONS = args.connections
    random.seed(args.seed)
    words = vocabulary()
    created = setup_databases(verbosity=0, interactive=False)
    try:
        with connection.cursor() as cursor:
            start = time.perf_counter()
            fill(cursor, args.size)
            print(f"filled {args.size:,} rows in {time.perf_counter() - start:.1f} s")
            services.index(["rooms", "attendees"])  # a first generation to replace
            loads = [load()]
            raw_before, _ = raw_anchor(cursor, TS_CONFIG)
            loads.append(load())
            start = time.perf_counter()
            results = services.index(["rooms", "attendees"], reindex=True)
            ours = time.perf_counter() - start
            loads.append(load())
            raw_after, raw_gin = raw_anchor(cursor, TS_CONFIG, with_gin=True)
            loads.append(load())
        docs = sum(r.documents for r in results)
        raw = (raw_before + raw_after) / 2
        print(f"documents: {docs:,}")
        print(
            f"anchor raw INSERT…SELECT to_tsvector: {raw:.1f} s "
            f"(runs {raw_before:.1f} s, {raw_after:.1f} s) = {docs / raw:,.0f} docs/s"
        )
        print(
            f"search index --reindex on {services.BUILD_CONNECTIONS} connection(s): "
            f"{ours:.1f} s = {docs / ours:,.0f} docs/s"
        )
        print(f"reindex throughput ratio vs anchor: {raw / ours:.2f}x (target >= 0.5)")
        print(
            f"second anchor, raw INSERT…SELECT + a GIN index on it: {raw + raw_gin:.1f} s;"
            f" ratio {(raw + raw_gin) / ours:.2f}x"
        )
        writing = sum(r.fill_seconds for r in results)
        indexing = sum(r.index_seconds for r in results)
        print(
            f"  work summed over connections: writing documents {writing:.1f} s "
            f"(ratio {raw / writing:.2f}x), indexes + ANALYZE {indexing:.1f} s"
        )
        print(
            "  load average (1 min) before/after anchor, ours, anchor: "
            + ", ".join(f"{v:.1f}" for v in loads)
        )

        sample = random.sample(words[:3000], args.queries)
        whole = [
            w if i % 2 else f"{w} {random.choice(words[:300])}"
            for i, w in enumerate(sample)
        ]
        prefixes = [w[:3] for w in random.sample(words, args.queries)]
        latencies(services.query, whole[:10])  # warm the caches
        for label, texts in (("whole words", whole), ("3-letter prefixes", prefixes)):
            times = latencies(services.query, texts)
            print(
                f"query latency, {label} ({len(texts)} queries): "
                f"p50 {statistics.median(times):.1f} ms, "
                f"p95 {percentile(times, 95):.1f} ms (target p95 < 50 ms; "
                f"load {load():.1f})"
            )
    finally:
        if args.keep:
            print(f"kept database {connection.settings_dict['NAME']}")
        else:
            teardown_databases(created, verbosity=0)


if __name__ == "__main__":
    main()
