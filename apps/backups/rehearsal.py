"""What a rehearsal checks in a backup restored into a scratch copy.

The copy is reached through a connection of its own that is never added to
DATABASES, so nothing else in the process can reach it: the migrations recorded in
it are compared with the code's, the receivers of ``rehearsal_checks`` (ops runs
``check_integrity``) run in a thread whose default connection *is* the copy, and the
rows of every table are counted and compared with the counts the dump recorded.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.db.utils import load_backend

from apps.core import __version__

from .catalog import BackupInfo
from .engines import Engine
from .errors import describe
from .signals import rehearsal_checks


@dataclass
class TableCount:
    table: str
    expected: int | None  # recorded at dump time; None: the metadata has none
    found: int | None  # in the restored copy; None: the table is missing

    @property
    def ok(self) -> bool:
        return self.expected is None or self.expected == self.found

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "expected": self.expected, "found": self.found}


@dataclass
class Rehearsal:
    """What restoring a backup into a scratch database showed."""

    backup: BackupInfo
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    migrations: dict[str, Any] = field(default_factory=dict)
    integrity: list[str] = field(default_factory=list)
    integrity_note: str = ""
    tables: list[TableCount] = field(default_factory=list)
    counts_recorded: bool = True
    duration: float = 0.0
    verified_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def reason(self) -> str:
        return "; ".join(self.problems)

    def fail(self, problem: str) -> None:
        self.ok = False
        self.problems.append(problem)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.backup.name,
            "ok": self.ok,
            "reason": self.reason,
            "verified_at": self.verified_at.isoformat(),
            "duration": round(self.duration, 3),
            "migrations": self.migrations,
            "integrity": self.integrity,
            "integrity_note": self.integrity_note,
            "counts_recorded": self.counts_recorded,
            "tables": [t.as_dict() for t in self.tables],
            "stagehand_version": __version__,
        }


def check_copy(engine: Engine, settings_dict: dict, report: Rehearsal) -> None:
    if MigrationRecorder.Migration._meta.db_table not in engine.table_names(
        settings_dict
    ):
        report.migrations = {"recorded": 0, "pending": [], "unknown": []}
        report.integrity_note = "not run: no Stagehand schema in the backup"
    else:
        _check_schema(settings_dict, report)
    _count_check(engine, settings_dict, report)


def _check_schema(settings_dict: dict, report: Rehearsal) -> None:
    with temporary_alias(settings_dict) as alias:
        report.migrations = _compare_migrations(alias)
        if unknown := report.migrations["unknown"]:
            report.fail(
                f"it holds {len(unknown)} migration(s) this code does not have "
                f"({', '.join(unknown[:3])}): it was taken by a newer Stagehand"
            )
        if not report.migrations["recorded"]:
            report.integrity_note = "not run: no Stagehand schema in the backup"
        else:
            problems, error = _on_copy(settings_dict, _integrity_problems)
            if error is not None and report.migrations["pending"]:
                report.integrity_note = (
                    f"not run: the schema precedes the code's ({describe(error)})"
                )
            elif error is not None:
                report.fail(f"the integrity checks could not run: {describe(error)}")
            else:
                report.integrity = problems
                if problems:
                    report.fail("integrity: " + "; ".join(problems))


def _count_check(engine: Engine, settings_dict: dict, report: Rehearsal) -> None:
    found = engine.count_rows(settings_dict)
    expected = report.backup.metadata.get("rows")
    if not isinstance(expected, dict):
        report.counts_recorded = False
        expected = {}
    tables = sorted(set(found) | set(expected))
    report.tables = [
        TableCount(
            table,
            expected.get(table) if report.counts_recorded else None,
            found.get(table),
        )
        for table in tables
    ]
    wrong = [t for t in report.tables if not t.ok]
    if wrong:
        report.fail(
            "row counts differ from the dump's: "
            + ", ".join(f"{t.table} {t.found} (dumped {t.expected})" for t in wrong[:5])
        )


def _integrity_problems() -> list[str]:
    problems = []
    for _receiver, answer in rehearsal_checks.send(sender=Rehearsal):
        problems.extend(answer or [])
    return problems


def _compare_migrations(alias: str) -> dict[str, Any]:
    """Return the migrations recorded in ``alias``, those the code would still
    apply (pending), and those it does not know (a newer Stagehand's)."""
    recorded = set(MigrationRecorder(connections[alias]).applied_migrations())
    known = set(MigrationLoader(None, ignore_no_migrations=True).disk_migrations)
    return {
        "recorded": len(recorded),
        "pending": sorted(f"{a}.{n}" for a, n in known - recorded),
        "unknown": sorted(f"{a}.{n}" for a, n in recorded - known),
    }


def _copy_wrapper(settings_dict: dict, alias: str) -> Any:
    """A connection to the copy, made for this thread only.

    It is not added to DATABASES: nothing else in the process can reach the copy.
    """
    configured = connections.configure_settings(
        {DEFAULT_DB_ALIAS: connections.settings[DEFAULT_DB_ALIAS], alias: settings_dict}
    )[alias]
    return load_backend(configured["ENGINE"]).DatabaseWrapper(configured, alias)


@contextmanager
def temporary_alias(settings_dict: dict) -> Iterator[str]:
    """An alias reaching ``settings_dict`` in this thread while the block runs."""
    alias = f"backup_copy_{uuid.uuid4().hex[:8]}"
    wrapper = _copy_wrapper(settings_dict, alias)
    connections[alias] = wrapper
    try:
        yield alias
    finally:
        wrapper.close()
        del connections[alias]


def _on_copy(
    settings_dict: dict, func: Callable[[], Any]
) -> tuple[Any, BaseException | None]:
    """Run ``func`` in a thread whose default connection is the copy.

    Return its result and the error it raised (or None). Checks written for the live
    database (the ORM's default) then read the copy, and nothing else is affected.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        copy = _copy_wrapper(settings_dict, DEFAULT_DB_ALIAS)
        connections[DEFAULT_DB_ALIAS] = copy
        try:
            outcome["value"] = func()
        except Exception as exc:  # noqa: BLE001 - handed back to the caller
            outcome["error"] = exc
        finally:
            copy.close()

    thread = threading.Thread(target=target, name="backup-rehearsal")
    thread.start()
    thread.join()
    return outcome.get("value"), outcome.get("error")
