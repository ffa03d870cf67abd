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
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from apps.backups import services as backups
from apps.connections import services as connections
from apps.core.output import human_duration
from apps.jobs import services as jobs
from apps.jobs.models import JobRun

from . import services

RECENT_RUNS = 10
LATEST_BACKUPS = 5
# The page reloads its tables in place this often (seconds); its Refresh checkbox
# turns that off.
REFRESH_SECONDS = 15


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
        "schedules": _schedules(),
        **_latest_backups(),
        "refresh_seconds": REFRESH_SECONDS,
        "now": timezone.now(),
    }
    return TemplateResponse(request, "admin/ops/operations.html", context)


def _labels() -> dict:
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
    return [_run_row(run) for run in jobs.history(limit=RECENT_RUNS)]


def _run_row(run: JobRun) -> dict:
    """A job run as the page shows it: datetimes for humanizing, the error's last
    line (a traceback ends with the exception), a link to the run's admin page."""
    error = run.error.strip()
    return {
        "id": run.pk,
        "label": jobs.call_label(run.job, run.args, run.kwargs),
        "trigger": run.trigger,
        "outcome": run.outcome,
        "queued_at": run.queued_at,
        "started_at": run.started_at,
        "duration": human_duration(run.duration) if run.duration is not None else "",
        "result": run.result,
        "error": error,
        "error_line": error.splitlines()[-1] if error else "",
        "url": reverse("admin:jobs_jobrun_change", args=[run.pk]),
    }


def _schedules() -> list[dict]:
    """Every periodic task with its next run, as Beat would compute it."""
    now = timezone.now()
    rows = []
    tasks = PeriodicTask.objects.select_related(
        "crontab", "interval", "solar", "clocked"
    )
    by_name = {task.name: task for task in tasks}
    for row in jobs.scheduled():
        task = by_name[row["name"]]
        rows.append(
            {
                **row,
                "last_run_at": task.last_run_at,
                "next_run_at": jobs.next_run_at(task, now),
                "url": _change_url("django_celery_beat", "periodictask", task.pk),
            }
        )
    return rows


def _change_url(app_label: str, model: str, pk: object) -> str:
    try:
        return reverse(f"admin:{app_label}_{model}_change", args=[pk])
    except NoReverseMatch:
        return ""


def _latest_backups() -> dict:
    try:
        found = backups.list_backups()[:LATEST_BACKUPS]
    except Exception as exc:  # noqa: BLE001 - the page shows why storage is unreadable
        return {"backups": [], "backups_unavailable": f"{type(exc).__name__}: {exc}"}
    # DRF when the page is shown, not when the admin loads: its serializers bring
    # psycopg, requests and pygments, ~100 ms of every command's start-up
    # (bench/startup.py).
    from apps.backups.serializers import BackupSerializer  # noqa: PLC0415

    rows = [{**BackupSerializer(b).data, "created": b.created} for b in found]
    verified = next((b for b in found if b.complete and b.verified_ok), None)
    if verified is None:
        verified = backups.newest_verified()
    return {
        "backups": rows,
        "backups_unavailable": "",
        "newest_verified": BackupSerializer(verified).data if verified else None,
        "newest_verified_age": (
            human_duration((timezone.now() - verified.created).total_seconds())
            if verified
            else ""
        ),
    }


def _connections_action(request: HttpRequest) -> None:
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
    try:
        run = connections.move_later(
            move,
            [_exact_glob(label)],
            interval_ms=interval,
            trigger=JobRun.Trigger.ADMIN,
        )
    except jobs.JobError as exc:
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
