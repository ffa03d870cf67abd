"""Benchmark: `purge` of soft-deleted worlds against the equivalent raw SQL DELETEs.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/stagehand .venv/bin/python bench/purge.py [ROWS]

Builds ROWS (default 1,000,000) soft-deleted rows with their dependants on the
PostgreSQL server of DATABASE_URL, in a scratch database (dropped afterwards): soft-
deleted worlds, each with 50 rooms and 1,000 attendees (each having accepted the
terms), and chat messages for the rest, plus one live world that must survive. Two
copies of it are made from one template; on the first, the anchor deletes everything
with raw SQL DELETEs in one transaction; on the second, `purge --worlds` runs in a
child process, whose peak memory (max RSS) is read when it exits.

Prints the ratio purge / raw SQL (target ≤ 2×) and the peak memory (target < 200 MB).
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import django
import psycopg
from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent
SCRATCH = "stagehand_bench_purge"
ROOMS_PER_WORLD = 50
ATTENDEES_PER_WORLD = 1000
ROWS_PER_WORLD = 50_000  # rows (world, rooms, attendees, terms, messages) per world


def server_url(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


def admin_exec(url: str, *statements: str) -> None:
    with psycopg.connect(server_url(url, "postgres"), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def django_env(url: str, dbname: str) -> dict:
    env = dict(os.environ)
    env["DATABASE_URL"] = server_url(url, dbname)
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    return env


def build(url: str, rows: int) -> dict:
    """Create the source database with ``rows`` soft-deleted rows; return the counts."""
    env = django_env(url, SCRATCH + "_src")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"],
        cwd=BASE_DIR,
        env=env,
        check=True,
    )
    worlds = max(1, rows // ROWS_PER_WORLD)
    fixed = worlds * (1 + ROOMS_PER_WORLD + 2 * ATTENDEES_PER_WORLD)
    messages = max(0, rows - fixed)
    with psycopg.connect(env["DATABASE_URL"]) as conn:
        conn.execute(
            "INSERT INTO worlds_world (id, title, config, roles, trait_grants, extra,"
            " locale, timezone, created_at, updated_at, deleted_at)"
            " SELECT 'w' || g, 'World ' || g, '{}', '{}', '{}', '{}', 'en', 'UTC',"
            " now(), now(), CASE WHEN g = 0 THEN NULL ELSE now() END"
            " FROM generate_series(0, %s) g",
            (worlds,),
        )
        conn.execute(
            "INSERT INTO worlds_room (world_id, import_id, name, description,"
            " sorting_priority, modules, trait_grants, extra, updated_at, deleted_at)"
            " SELECT 'w' || w, 'r' || r, 'Room ' || r, '', r, '[]', '{}', '{}', now(),"
            " NULL FROM generate_series(0, %s) w, generate_series(1, %s) r",
            (worlds, ROOMS_PER_WORLD),
        )
        conn.execute(
            "INSERT INTO accounts_user (password, is_superuser, username, first_name,"
            " last_name, email, is_staff, is_active, date_joined, display_name, traits,"
            " profile, deleted_at, world_id, token_id, avatar, updated_at)"
            " SELECT '!', false, 'u-' || w || '-' || u, '', '', '', false, true, now(),"
            " 'User ' || u, '[]', '{}', NULL, 'w' || w, 'u' || u, '', now()"
            " FROM generate_series(0, %s) w, generate_series(1, %s) u",
            (worlds, ATTENDEES_PER_WORLD),
        )
        conn.execute(
            "INSERT INTO accounts_terms (slug, version, name, text, required,"
            " active_from, created_at) VALUES ('tos', '1', 'ToS', '# ToS', true,"
            " now(), now())"
        )
        conn.execute(
            "INSERT INTO accounts_termsacceptance (user_id, terms_id, accepted_at)"
            " SELECT u.id, t.id, now() FROM accounts_user u, accounts_terms t"
        )
        # Messages spread over every room of every world, sent by attendees there.
        conn.execute(
            "INSERT INTO connections_chatmessage (room_id, sender_id, text, created_at)"
            " SELECT r.id, u.id, 'message ' || g, now()"
            " FROM generate_series(1, %s) g"
            " JOIN worlds_room r ON r.id = (SELECT min(id) FROM worlds_room)"
            "   + (g %% (SELECT count(*) FROM worlds_room))"
            " JOIN accounts_user u ON u.world_id = r.world_id"
            "   AND u.token_id = 'u' || (1 + g %% %s)",
            (messages + messages // worlds, ATTENDEES_PER_WORLD),
        )
        conn.execute("ANALYZE")
        counts = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in (
                "worlds_world",
                "worlds_room",
                "accounts_user",
                "accounts_termsacceptance",
                "connections_chatmessage",
            )
        }
        doomed = conn.execute(
            "SELECT (SELECT count(*) FROM worlds_world WHERE deleted_at IS NOT NULL)"
            " + (SELECT count(*) FROM worlds_room r JOIN worlds_world w"
            "    ON w.id = r.world_id WHERE w.deleted_at IS NOT NULL)"
            " + (SELECT count(*) FROM accounts_user u JOIN worlds_world w"
            "    ON w.id = u.world_id WHERE w.deleted_at IS NOT NULL)"
            " + (SELECT count(*) FROM accounts_termsacceptance a JOIN accounts_user u"
            "    ON u.id = a.user_id JOIN worlds_world w ON w.id = u.world_id"
            "    WHERE w.deleted_at IS NOT NULL)"
            " + (SELECT count(*) FROM connections_chatmessage m JOIN worlds_room r"
            "    ON r.id = m.room_id JOIN worlds_world w ON w.id = r.world_id"
            "    WHERE w.deleted_at IS NOT NULL)"
        ).fetchone()[0]
    return {"tables": counts, "doomed_rows": doomed, "deleted_worlds": worlds}


RAW_SQL = [
    "CREATE TEMP TABLE doomed_world AS SELECT id FROM worlds_world"
    " WHERE deleted_at IS NOT NULL",
    "CREATE TEMP TABLE doomed_user AS SELECT id FROM accounts_user"
    " WHERE world_id IN (SELECT id FROM doomed_world)",
    "DELETE FROM connections_chatmessage WHERE room_id IN"
    " (SELECT id FROM worlds_room WHERE world_id IN (SELECT id FROM doomed_world))",
    "UPDATE connections_chatmessage SET sender_id = NULL"
    " WHERE sender_id IN (SELECT id FROM doomed_user)",
    "DELETE FROM worlds_room WHERE world_id IN (SELECT id FROM doomed_world)",
    "DELETE FROM accounts_termsacceptance WHERE user_id IN (SELECT id FROM doomed_user)",
    "DELETE FROM django_admin_log WHERE user_id IN (SELECT id FROM doomed_user)",
    "DELETE FROM authtoken_token WHERE user_id IN (SELECT id FROM doomed_user)",
    "DELETE FROM accounts_user_groups WHERE user_id IN (SELECT id FROM doomed_user)",
    "DELETE FROM accounts_user_user_permissions"
    " WHERE user_id IN (SELECT id FROM doomed_user)",
    "DELETE FROM accounts_user WHERE id IN (SELECT id FROM doomed_user)",
    "DELETE FROM worlds_world WHERE id IN (SELECT id FROM doomed_world)",
]


def raw_delete(url: str) -> float:
    with psycopg.connect(server_url(url, SCRATCH + "_raw")) as conn:
        started = time.perf_counter()
        with conn.transaction():
            for statement in RAW_SQL:
                conn.execute(statement)
        return time.perf_counter() - started


def child_purge(batch_size: int) -> None:
    """In the child: run purge --worlds and print its time and counts as JSON."""
    sys.path.insert(0, str(BASE_DIR))
    django.setup()
    # The project's modules can be imported only once Django is set up, here.
    from apps.worlds import services  # noqa: PLC0415

    per_model: dict[str, float] = {}
    clock = [time.perf_counter()]

    def on_batch(model: str, count: int) -> None:
        now = time.perf_counter()
        per_model[model] = per_model.get(model, 0.0) + now - clock[0]
        clock[0] = now

    def run() -> Any:
        return services.purge(
            worlds=True,
            rooms=False,
            users=False,
            batch_size=batch_size,
            on_batch=on_batch,
        )

    sql_time: dict[str, list] = {}

    def timed(execute, sql, params, many, context):
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            key = " ".join(sql.split()[:6])[:90]
            entry = sql_time.setdefault(key, [0, 0.0])
            entry[0] += 1
            entry[1] += time.perf_counter() - began

    if os.environ.get("BENCH_SQL"):  # the slowest statements, on stderr
        connection.execute_wrappers.append(timed)

    started = clock[0] = time.perf_counter()
    if os.environ.get("BENCH_PROFILE"):  # where the time goes, on stderr
        profile = cProfile.Profile()
        report = profile.runcall(run)
        pstats.Stats(profile, stream=sys.stderr).sort_stats(
            os.environ.get("BENCH_SORT", "tottime")
        ).print_stats(30)
    else:
        report = run()
    elapsed = time.perf_counter() - started
    for key, (n, t) in sorted(sql_time.items(), key=lambda kv: -kv[1][1])[:12]:
        print(f"{t:8.2f} s {n:6d}x  {key}", file=sys.stderr)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "totals": report.totals(),
                "peak_kb": peak_kb,
                "per_model": per_model,
            }
        )
    )


def remaining(url: str, dbname: str) -> dict:
    with psycopg.connect(server_url(url, dbname)) as conn:
        return {
            "worlds": conn.execute("SELECT count(*) FROM worlds_world").fetchone()[0],
            "messages": conn.execute(
                "SELECT count(*) FROM connections_chatmessage"
            ).fetchone()[0],
            "users": conn.execute("SELECT count(*) FROM accounts_user").fetchone()[0],
        }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_purge(int(sys.argv[2]))
        return
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    batch_size = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000  # PURGE_BATCH
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit("bench/purge.py needs DATABASE_URL=postgres://… (a PostgreSQL server)")
    names = [SCRATCH + suffix for suffix in ("_src", "_raw", "_purge")]
    admin_exec(url, *(f"DROP DATABASE IF EXISTS {n}" for n in names))
    try:
        admin_exec(url, f"CREATE DATABASE {names[0]}")
        started = time.perf_counter()
        built = build(url, rows)
        print(
            f"built {built['doomed_rows']:,} soft-deleted rows in "
            f"{built['deleted_worlds']} worlds ({time.perf_counter() - started:.1f} s): "
            + ", ".join(f"{t} {n:,}" for t, n in built["tables"].items())
        )
        admin_exec(
            url,
            f"CREATE DATABASE {names[1]} TEMPLATE {names[0]}",
            f"CREATE DATABASE {names[2]} TEMPLATE {names[0]}",
        )
        raw = raw_delete(url)
        child = subprocess.run(
            [sys.executable, __file__, "--child", str(batch_size)],
            cwd=BASE_DIR,
            env=django_env(url, names[2]),
            capture_output=True,
            text=True,
        )
        if child.returncode:
            sys.exit(f"purge failed:\n{child.stderr}")
        if os.environ.get("BENCH_PROFILE") or os.environ.get("BENCH_SQL"):
            print(child.stderr)
        result = json.loads(child.stdout.strip().splitlines()[-1])
        after_raw, after_purge = remaining(url, names[1]), remaining(url, names[2])
        if after_raw != after_purge:
            sys.exit(f"purge and raw SQL disagree: {after_purge} vs {after_raw}")
        peak_mb = result["peak_kb"] / 1024
        ratio = result["seconds"] / raw
        print(f"raw SQL DELETEs (anchor): {raw:.2f} s")
        print(
            f"purge --worlds (batch {batch_size}): {result['seconds']:.2f} s, "
            f"peak memory {peak_mb:.0f} MB; removed "
            + ", ".join(f"{n:,} {what}" for what, n in result["totals"].items())
        )
        print(
            "  time per model: "
            + ", ".join(f"{m} {t:.2f} s" for m, t in result["per_model"].items())
        )
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"ratio purge / raw SQL: {ratio:.2f}x (target <= 2x), load average {load}"
        )
        print(f"peak memory: {peak_mb:.0f} MB (target < 200 MB)")
    finally:
        if not os.environ.get("BENCH_KEEP"):  # keep the scratch databases to dig in
            admin_exec(url, *(f"DROP DATABASE IF EXISTS {n}" for n in names))


if __name__ == "__main__":
    main()
