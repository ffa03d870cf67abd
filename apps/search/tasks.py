"""Celery entry points of search: the nightly job and document updates after writes."""

from __future__ import annotations

from celery import shared_task

from apps.jobs.registry import job

from . import services


@job(
    "search-index",
    "Rebuild the search index as a new generation and switch to it (no downtime).",
    default_schedule="30 1 * * *",
)
def search_index_job(*models: str, reindex: bool | str = True, since: str = "") -> str:
    """Index ``models`` (all when none); schedule kwargs arrive as strings."""
    if isinstance(reindex, str):
        reindex = reindex.strip().lower() not in {"0", "false", "no", "off"}
    since_at = None
    if since:
        since_at = services.parse_timestamp(since)
        reindex = False
    results = services.index(models, reindex=reindex, since=since_at)
    summary = ", ".join(f"{r.model} {r.generation} ({r.documents})" for r in results)
    catch_up = services.catch_up_command(results)
    return summary + (
        f"; rows changed during the build, run: {catch_up}" if catch_up else ""
    )


@shared_task(name="search.update_documents", ignore_result=True)
def update_documents(model: str, ids: list) -> int:
    return services.update_documents(model, ids)
