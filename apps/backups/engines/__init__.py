"""How each database is dumped and restored: one module per engine.

An engine dumps its database into a byte stream (recording the row count of every
table in the same snapshot), and materializes a backup as a *side copy*: a new
PostgreSQL database or a new SQLite file beside the live one, checksum-verified, which
is then either swapped in (restore) or dropped after the rehearsal's checks (verify).
The live database is never touched before the copy is complete.
"""

from __future__ import annotations

from django.utils.module_loading import import_string

from .base import Dumped, Engine, SideCopy, check_checksum, engine_of, restore_jobs

# Imported when first used: the PostgreSQL engine loads psycopg (~50 ms of every
# command's start-up on the embedded SQLite defaults; bench/startup.py).
ENGINES = {
    "postgresql": "apps.backups.engines.postgresql.PostgreSQL",
    "sqlite": "apps.backups.engines.sqlite.SQLite",
}


def for_database(database: str) -> Engine:
    """Return the engine that dumps and restores ``database``."""
    return import_string(ENGINES[engine_of(database)])(database)


__all__ = [
    "Dumped",
    "Engine",
    "SideCopy",
    "check_checksum",
    "engine_of",
    "for_database",
    "restore_jobs",
]
