"""The worlds app's job: the nightly purge of what was soft-deleted."""

from __future__ import annotations

from apps.jobs.registry import job

from . import services


@job(
    "purge",
    "Remove soft-deleted worlds, rooms and users for good.",
    default_schedule="0 3 * * *",
)
def purge(
    worlds: bool = True, rooms: bool = True, users: bool = True, dry_run: bool = False
) -> str:
    report = services.purge(worlds=worlds, rooms=rooms, users=users, dry_run=dry_run)
    return ("dry run: would remove " if dry_run else "") + report.summary()
