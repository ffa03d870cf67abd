"""``/metrics``: Stagehand in Prometheus' text format (docs/metrics.md), and its view.

Two kinds of figures:

- the state of the backend, read when Prometheus scrapes (the same services as
  ``stats``): connections per deploy label, queue depths, job runs by job and outcome
  with their durations, the beat lease's age, the newest backup's age;
- this process's own counters: HTTP requests and WebSocket connections, counted by
  ``CountingMiddleware`` around the ASGI application, and the process's CPU, memory
  and file descriptors (prometheus-client's process collector).

A source that does not answer (Redis, the broker, backup storage) is left out of the
scrape and reported as ``stagehand_source_up{source="…"} 0``; the scrape never fails
because one part of the backend is down.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from apps.backups import services as backups
from apps.connections import services as connections
from apps.jobs import services as jobs
from apps.jobs.models import JobRun

from .views import is_staff

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)

HTTP_REQUESTS = Counter(
    "stagehand_http_requests",
    "HTTP requests this process answered, by method and status code.",
    ["method", "status"],
    registry=REGISTRY,
)
WEBSOCKETS_ACCEPTED = Counter(
    "stagehand_websocket_connections",
    "WebSocket connections this process accepted.",
    registry=REGISTRY,
)
WEBSOCKETS_OPEN = Gauge(
    "stagehand_websocket_open",
    "WebSocket connections open in this process now.",
    registry=REGISTRY,
)
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


class CountingMiddleware:
    """ASGI middleware counting this process's HTTP responses and WebSockets."""

    def __init__(self, app: Callable):
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            await self.app(scope, receive, self._counting_http(scope, send))
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _counting_http(self, scope: dict, send: Callable) -> Callable:
        method = scope.get("method", "")
        method = method if method in METHODS else "other"

        async def counting_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                HTTP_REQUESTS.labels(method, str(message["status"])).inc()
            await send(message)

        return counting_send

    async def _websocket(self, scope: dict, receive: Callable, send: Callable) -> None:
        accepted = False

        async def counting_send(message: dict) -> None:
            nonlocal accepted
            if message["type"] == "websocket.accept" and not accepted:
                accepted = True
                WEBSOCKETS_ACCEPTED.inc()
                WEBSOCKETS_OPEN.inc()
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            if accepted:
                WEBSOCKETS_OPEN.dec()


class BackendCollector(Collector):
    """The backend's state, read at each scrape."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "stagehand_source_up",
            "Whether a source of these metrics answered this scrape (1) or not (0).",
            labels=["source"],
        )
        for source, read in (
            ("connections", _connections),
            ("queues", _queues),
            ("jobs", _job_runs),
            ("beat", _beat),
            ("backups", _backups),
        ):
            try:
                families = read()
            except Exception:  # noqa: BLE001 - one part down never fails the scrape
                up.add_metric([source], 0)
                continue
            if families is not None:  # None: not configured here
                up.add_metric([source], 1)
                yield from families
        yield up


def _connections() -> list[Metric] | None:
    if not settings.REDIS_URL:
        return None  # the in-memory layer: nothing is shared to count
    family = GaugeMetricFamily(
        "stagehand_connections",
        "Live WebSocket connections per deploy label (every server process).",
        labels=["label"],
    )
    for item in connections.list_labels():
        family.add_metric([item.label], item.connections)
    return [family]


def _queues() -> list[Metric] | None:
    if not settings.STAGEHAND_HAS_BROKER:
        return None
    family = GaugeMetricFamily(
        "stagehand_queue_waiting",
        "Tasks waiting in each queue of the broker.",
        labels=["queue"],
    )
    for queue in jobs.queue_status():
        family.add_metric([queue.queue], queue.waiting)
    return [family]


def _job_runs() -> list[Metric]:
    runs = CounterMetricFamily(
        "stagehand_job_runs",
        "Job runs recorded, by job and outcome.",
        labels=["job", "outcome"],
    )
    durations = SummaryMetricFamily(
        "stagehand_job_run_duration_seconds",
        "Durations of the finished job runs, by job and outcome.",
        labels=["job", "outcome"],
    )
    rows = (
        JobRun.objects.values("job", "outcome")
        .annotate(runs=Count("id"), timed=Count("duration"), seconds=Sum("duration"))
        .order_by("job", "outcome")
    )
    for row in rows:
        labels = [row["job"], row["outcome"]]
        runs.add_metric(labels, row["runs"])
        if row["timed"]:
            durations.add_metric(labels, row["timed"], row["seconds"])
    last_success = GaugeMetricFamily(
        "stagehand_job_last_success_timestamp_seconds",
        "When each job last started a run that succeeded (Unix time).",
        labels=["job"],
    )
    succeeded = (
        JobRun.objects.filter(outcome=JobRun.Outcome.SUCCESS, started_at__isnull=False)
        .values("job")
        .annotate(last=Max("started_at"))
        .order_by("job")
    )
    for row in succeeded:
        last_success.add_metric([row["job"]], row["last"].timestamp())
    return [runs, durations, last_success]


def _beat() -> list[Metric] | None:
    if not settings.STAGEHAND_HAS_BROKER:
        return None
    tick = jobs.beat_last_tick()
    if tick is None:
        return []  # no beat holds the lease: alert on the metric being absent
    age = GaugeMetricFamily(
        "stagehand_beat_lease_age_seconds",
        "Seconds since Celery Beat last renewed its lease (its last tick).",
        value=(timezone.now() - tick).total_seconds(),
    )
    return [age]


def _backups() -> list[Metric]:
    found = backups.list_backups()
    counts = GaugeMetricFamily(
        "stagehand_backups", "Backups in storage, by state.", labels=["state"]
    )
    states: dict[str, int] = {}
    for backup in found:
        states[backup.state] = states.get(backup.state, 0) + 1
    for state, count in sorted(states.items()):
        counts.add_metric([state], count)
    families = [counts]
    complete = [b for b in found if b.complete]
    if complete:
        newest = max(b.created for b in complete)
        families.append(
            GaugeMetricFamily(
                "stagehand_backup_newest_age_seconds",
                "Seconds since the newest complete backup was taken.",
                value=(timezone.now() - newest).total_seconds(),
            )
        )
    return families


REGISTRY.register(BackendCollector())


def token_matches(header: str) -> bool:
    """Whether an ``Authorization`` header carries the METRICS_TOKEN bearer token."""
    token = settings.METRICS_TOKEN
    scheme, _, given = header.partition(" ")
    if not token or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


@never_cache
@require_safe
@transaction.non_atomic_requests
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus' scrape: for the METRICS_TOKEN bearer token, or a staff user."""
    header = request.headers.get("Authorization", "")
    if not token_matches(header) and not is_staff(request):
        how = (
            "send the header Authorization: Bearer <METRICS_TOKEN>"
            if settings.METRICS_TOKEN
            else "set METRICS_TOKEN and send it as Authorization: Bearer <token>"
        )
        response = HttpResponse(
            f"/metrics needs a token: {how}, or log in to the admin as staff.\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
