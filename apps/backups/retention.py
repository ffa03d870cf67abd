"""Retention that cannot strand you: which backups ``prune_backups --keep N`` deletes.

Only backups that are known to restore count towards N: those a rehearsal verified,
and complete ones not verified yet that are newer than the newest verified one (the
verification of a fresh backup runs after it). The newest verified backup is never
deleted, and neither is the newest complete one. A backup whose rehearsal failed, a
damaged one, or an older one never verified is kept while fewer than N counted
backups are newer (so it can be looked at), and deleted once it is behind them. An
incomplete one (or a metadata file left alone) goes once it is a day old.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from .catalog import (
    INCOMPLETE,
    METADATA_SUFFIX,
    VERIFIED_FAILED,
    VERIFIED_SUFFIX,
    BackupInfo,
    scan,
)
from .errors import BackupError, describe
from .storage import PREFIX, backup_storage

# A dump without readable metadata younger than this may be one whose publication is
# under way by an older version; retention leaves it alone until then.
INCOMPLETE_GRACE = dt.timedelta(days=1)


@dataclass
class PruneDecision:
    backup: BackupInfo
    delete: bool
    reason: str
    counted: bool = False  # whether it counts towards --keep

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.backup.label,
            "engine": self.backup.engine,
            "size": self.backup.size,
            "state": self.backup.state,
            "verified": self.backup.verified,
            "action": "delete" if self.delete else "keep",
            "counted": self.counted,
            "reason": self.reason,
        }


def plan_prune(keep: int, *, now: dt.datetime | None = None) -> list[PruneDecision]:
    """Decide, newest first, which backups retention keeps and which it deletes."""
    if keep < 1:
        raise BackupError(
            "--keep must be at least 1; prune never deletes every backup."
        )
    now = now or dt.datetime.now(dt.UTC)
    backups, orphans = scan()
    everything = sorted(
        backups + orphans, key=lambda b: (b.created, b.name), reverse=True
    )
    newest_verified = next(
        (b for b in everything if b.complete and b.verified_ok), None
    )
    newest_complete = next((b for b in everything if b.complete), None)
    # Without any verified backup (verification off, or backups older than it),
    # every complete backup not known to fail counts, as before verification.
    seen_verified = False
    counted = 0
    decisions = []
    for item in everything:
        if item is newest_verified:
            seen_verified = True
        counts = item.complete and (
            item.verified_ok
            or (
                item.verified != VERIFIED_FAILED
                and (not seen_verified or newest_verified is None)
            )
        )
        if counts:
            counted += 1
            kind = "complete and verified" if item.verified_ok else "complete"
            if item is newest_verified:
                decision = PruneDecision(item, False, "the newest verified backup")
            elif item is newest_complete:
                decision = PruneDecision(item, False, "the newest complete backup")
            elif counted <= keep:
                decision = PruneDecision(
                    item, False, f"{kind}, one of the newest {keep}"
                )
            else:
                decision = PruneDecision(
                    item, True, f"{kind}, older than the newest {keep}"
                )
            decision.counted = True
        elif item.state == INCOMPLETE:
            old = now - item.created > INCOMPLETE_GRACE
            age = "more" if old else "less"
            decision = PruneDecision(
                item, old, f"incomplete for {age} than a day: {item.problem}"
            )
        else:
            behind = counted >= keep and item is not newest_complete
            if not item.complete:
                what = f"damaged, {{}} than the newest {keep} complete: {item.problem}"
            elif item.verified == VERIFIED_FAILED:
                what = (
                    f"failed its verification, {{}} than the newest {keep} counted: "
                    f"{item.verified_text.removeprefix('failed: ')}"
                )
            else:
                what = (
                    f"not verified and older than the newest verified backup, "
                    f"{{}} than the newest {keep} counted"
                )
            decision = PruneDecision(
                item, behind, what.format("older" if behind else "newer")
            )
        decisions.append(decision)
    return decisions


def delete_backups(backups: list[BackupInfo]) -> None:
    """Delete each backup (dump first: a metadata file alone is never listed).

    Raise BackupError at the first failure, saying what was deleted before it.
    """
    storage = backup_storage()
    done: list[str] = []
    for item in backups:
        paths = [item.path] if not item.metadata_only else []
        paths += [item.path + VERIFIED_SUFFIX, item.path + METADATA_SUFFIX]
        for path in paths:
            try:
                storage.delete(path)
            except Exception as exc:  # noqa: BLE001 - reported with what was done
                deleted = f"deleted {len(done)} of {len(backups)} before it"
                raise BackupError(
                    f"deleting {path.removeprefix(PREFIX)} failed: "
                    f"{storage.describe()} ({describe(exc)}); {deleted}"
                    f"{': ' + ', '.join(done) if done else ''}. "
                    f"{storage.advice().capitalize()}, then run "
                    "prune_backups again."
                ) from exc
        done.append(item.label)


def prune(keep: int, *, dry_run: bool = False) -> list[BackupInfo]:
    """Apply retention (see ``plan_prune``); return the backups (to be) deleted."""
    doomed = [d.backup for d in plan_prune(keep) if d.delete]
    if not dry_run:
        delete_backups(doomed)
    return doomed


def apply_retention() -> list[BackupInfo]:
    """Apply ``BACKUP_KEEP`` (0 keeps everything); return the deleted backups."""
    keep = settings.BACKUP_KEEP
    return prune(keep) if keep > 0 else []
