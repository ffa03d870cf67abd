"""The admin's operations page: the health of every component, live connections per
deploy label with drop and force-reload buttons, the latest job runs and backups.

It calls the same services as ``stats``, ``connections``, ``jobs history`` and ``backups``.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from . import services

RECENT_RUNS = 10
LATEST_BACKUPS = 5


# Outside the request's transaction: a paced send queued for the workers leaves as
# soon as its run is saved, and a broker that refuses it becomes a message here.
@transaction.non_atomic_requests
def operations_view(request: HttpRequest) -> HttpResponse:
    """Show the operations page; a POST drops or reloads one label's connections."""
    if request.method == "POST":
        _connections_action(request)
        return HttpResponseRedirect(reverse("admin-operations"))
    context = {
        **admin.site.each_context(request),
        "title": "Operations",
        "components": services.collect_stats(),
        **_labels(),
        "runs": _recent_runs(),
        **_latest_backups(),
    }
    return TemplateResponse(request, "admin/ops/operations.html", context)


def _labels() -> dict:
    from apps.connections import services as connections

    try:
        labels = connections.list_labels()
    except connections.LayerUnavailable as exc:
        return {"labels": [], "labels_unavailable": str(exc)}
    return {
        "labels": labels,
        "labels_unavailable": "",
        "current_label": connections.current_label(),
    }


def _recent_runs() -> list[dict]:
    from apps.jobs import services as jobs

    return [jobs.run_as_dict(run) for run in jobs.history(limit=RECENT_RUNS)]


def _latest_backups() -> dict:
    from apps.backups import services as backups

    try:
        found = backups.list_backups()[:LATEST_BACKUPS]
    except Exception as exc:  # noqa: BLE001 - the page shows why storage is unreadable
        return {"backups": [], "backups_unavailable": f"{type(exc).__name__}: {exc}"}
    return {"backups": [b.as_dict() for b in found], "backups_unavailable": ""}


def _connections_action(request: HttpRequest) -> None:
    from apps.connections import services as connections

    label = request.POST.get("label", "")
    try:
        move = connections.Move.of(request.POST.get("action") or "")
        interval = int(request.POST.get("interval") or 0)
    except ValueError:
        move, interval = None, -1
    if move is None or not label or interval < 0:
        messages.error(
            request,
            "Choose drop or force reload for a label, with an interval of 0 or more ms.",
        )
        return
    try:
        # The exact label only: an operator pressing a row's button means that row.
        selection = connections.select([_exact_glob(label)])
        if interval and settings.STAGEHAND_HAS_BROKER:
            # count × interval would hold this page for minutes: a worker paces it.
            _move_later(request, move, label, interval)
            return
        result = connections.move(move, selection, interval_ms=interval)
    except connections.LayerUnavailable as exc:
        messages.error(request, str(exc))
        return
    if result.unreachable:
        messages.warning(request, result.unreachable_note())
    messages.success(request, result.summary())


def _move_later(request: HttpRequest, move, label: str, interval: int) -> None:
    from apps.connections import services as connections
    from apps.jobs.models import JobRun
    from apps.jobs.services import JobError

    try:
        run = connections.move_later(
            move,
            [_exact_glob(label)],
            interval_ms=interval,
            trigger=JobRun.Trigger.ADMIN,
        )
    except JobError as exc:
        messages.error(request, str(exc))
        return
    messages.success(
        request,
        f"{move.title} of {label}, one connection every {interval} ms, "
        f"sent to the workers as job run #{run.pk}: its end shows under Recent job "
        "runs.",
    )


def _exact_glob(label: str) -> str:
    """Return an fnmatch pattern that matches ``label`` and nothing else."""
    return "".join(f"[{c}]" if c in "[]*?" else c for c in label)
