"""Health of the components Stagehand is configured to use.

``info``, ``/readyz``, ``stats``, ``watch``, ``/api/v1/stats/`` and the admin's
operations page ask the same questions: each check talks to its component for real,
with a short timeout, and never raises.
"""

from __future__ import annotations

import asyncio
import platform
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

import celery
import channels
import django
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.core.files.storage import storages
from django.db import connections as databases
from django.db.models import Max
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from apps.backups import services as backups
from apps.connections import services as connections
from apps.core import __version__
from apps.core.output import human_duration
from apps.core.secrets import mask_url
from apps.jobs import services as jobs
from config.celery_app import app as celery_app

from . import backend

# The one vocabulary of every status Stagehand reports: info, stats, watch, /readyz,
# /api/v1/stats/, their JSON and the admin's operations page.
OK = "ok"
UNAVAILABLE = "unavailable"
NOT_CONFIGURED = "not configured"
STATUSES = (OK, UNAVAILABLE, NOT_CONFIGURED)


@dataclass
class ComponentStatus:
    name: str
    backend: str
    # False only for a configured component that does not answer: one that is not
    # configured fails nothing.
    ok: bool
    detail: str = ""
    configured: bool = True
    figures: dict = field(default_factory=dict)

    @property
    def status(self) -> str:
        """``ok``, ``unavailable`` or ``not configured``."""
        if not self.configured:
            return NOT_CONFIGURED
        return OK if self.ok else UNAVAILABLE

    # The name stats used for its two words; the same status now, kept for callers
    # (serializers with source="health") written before there was one vocabulary.
    health = status

    def as_dict(self) -> dict:
        return {**asdict(self), "status": self.status}

    as_stats_dict = as_dict


def _timed(name: str, backend: str, probe: Callable[[], str]) -> ComponentStatus:
    started = time.monotonic()
    try:
        detail = probe()
    except Exception as exc:  # noqa: BLE001 - a health check reports, never raises
        return ComponentStatus(name, backend, ok=False, detail=_describe(exc))
    elapsed_ms = round((time.monotonic() - started) * 1000, 1)
    return ComponentStatus(
        name, backend, ok=True, detail=detail, figures={"ms": elapsed_ms}
    )


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def database_description(alias: str = "default") -> dict:
    """Return engine, host and name of a database, never its password."""
    db = settings.DATABASES[alias]
    engine = db["ENGINE"].rsplit(".", 1)[-1]
    host = db.get("HOST") or ""
    if host and db.get("PORT"):
        host = f"{host}:{db['PORT']}"
    return {"engine": engine, "host": host or "-", "name": str(db.get("NAME", ""))}


def check_database(alias: str = "default") -> ComponentStatus:
    described = database_description(alias)

    def probe() -> str:
        connection = databases[alias]
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
        except Exception:
            # A connection whose session was ended (a restore swaps the database in,
            # the server restarted) stays broken: drop it so the next check connects
            # anew. Inside a transaction, closing would only doom that transaction.
            if not connection.in_atomic_block:
                connection.close()
            raise
        return (
            connection.display_name
            + " "
            + ".".join(str(part) for part in connection.get_database_version())
        )

    status = _timed("database", described["engine"], probe)
    status.figures.update(described)
    return status


def check_cache() -> ComponentStatus:
    backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]

    def probe() -> str:
        key = f"stagehand:health:{uuid.uuid4().hex}"
        cache.set(key, "1", timeout=5)
        if cache.get(key) != "1":
            raise RuntimeError("value written was not read back")
        cache.delete(key)
        return settings.CACHES["default"].get("LOCATION", "") and mask_url(
            settings.CACHES["default"]["LOCATION"]
        )

    return _timed("cache", backend, probe)


def check_channel_layer() -> ComponentStatus:
    backend = settings.CHANNEL_LAYERS["default"]["BACKEND"].rsplit(".", 1)[-1]

    async def roundtrip() -> None:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "health.check"})
        await asyncio.wait_for(layer.receive(channel), timeout=3)
        closer = getattr(layer, "close_pools", None)
        if closer is not None:
            await closer()

    def probe() -> str:
        async_to_sync(roundtrip)()
        if backend == "InMemoryChannelLayer":
            return "in-memory (this process only)"
        return ", ".join(
            mask_url(h["address"] if isinstance(h, dict) else str(h))
            for h in settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"]
        )

    return _timed("channel layer", backend, probe)


def check_broker() -> ComponentStatus:
    if not settings.STAGEHAND_HAS_BROKER:
        return ComponentStatus(
            "broker",
            "none",
            ok=True,
            configured=False,
            detail="no CELERY_BROKER_URL: jobs run in-process",
        )
    url = settings.CELERY_BROKER_URL
    backend = url.split("://", 1)[0]

    def probe() -> str:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
        return mask_url(url)

    return _timed("broker", backend, probe)


def check_storage() -> ComponentStatus:
    """Media storage and backup storage: unavailable when either does not answer."""
    storage = storages["default"]
    backend = type(storage).__name__

    figures: dict = {}

    def probe() -> str:
        media = media_probe()
        # Bounded in time: a backup storage that hangs makes this fail, not wait.
        where = backups.probe_storage()
        return f"{media}; backups: {where}; {verified_backup(figures)}"

    def media_probe() -> str:
        if hasattr(storage, "bucket"):
            storage.connection.meta.client.head_bucket(Bucket=storage.bucket_name)
            return f"s3://{storage.bucket_name}/{storage.location}"
        # A local folder: make sure it exists and is writable.
        root = Path(storage.location)
        root.mkdir(parents=True, exist_ok=True)
        probe_file = root / f".health-{uuid.uuid4().hex}"
        probe_file.write_bytes(b"")
        probe_file.unlink()
        return str(root)

    return _with_figures(_timed("storage", backend, probe), figures)


def verified_backup(figures: dict) -> str:
    """Say how old the newest verified backup is (and put it in ``figures``)."""
    item = backups.newest_verified()
    if item is None:
        figures.update(newest_verified_backup=None, newest_verified_age_s=None)
        return "no verified backup yet (restore --verify NAME verifies one)"
    age = max((timezone.now() - item.created).total_seconds(), 0)
    figures.update(newest_verified_backup=item.name, newest_verified_age_s=round(age))
    return f"newest verified backup {human_duration(age)} old ({item.name})"


def readiness_checks() -> list[ComponentStatus]:
    """Return the checks a load balancer needs before sending traffic."""
    return [check_database(), check_cache(), check_channel_layer(), check_broker()]


def collect_info() -> dict:
    """Return versions, configuration and the status of every configured component."""
    components = readiness_checks() + [check_storage()]
    return {
        "versions": {
            "stagehand": __version__,
            "python": platform.python_version(),
            "django": django.get_version(),
            "celery": celery.__version__,
            "channels": channels.__version__,
        },
        "settings_module": settings.SETTINGS_MODULE,
        "deploy_label": deploy_label(),
        "database": database_description(),
        "components": [c.as_dict() for c in components],
        "ok": all(c.ok for c in components),
    }


def deploy_label() -> str:
    """Return the deploy label ``<commit>.<environment>`` of this process."""
    return f"{settings.STAGEHAND_COMMIT}.{settings.STAGEHAND_ENVIRONMENT}"


# Stats: every component of a running backend
# ------------------------------------------------------------------------------

# Celery's remote control waits this long for workers to answer.
WORKER_TIMEOUT = 1.0
# Beat ticks at least every few seconds; no tick for this long means it is gone.
BEAT_STALE_AFTER = 120.0


def check_processes() -> ComponentStatus:
    """The processes ``backend start`` recorded in the run directory, checked in /proc."""
    states = backend.inspect_processes()
    where = str(backend.run_dir())
    if not states:
        return ComponentStatus(
            "processes",
            "run dir",
            ok=True,
            configured=False,
            detail=f"none recorded in {where} (not started with `backend start`)",
            figures={"run_dir": where, "processes": []},
        )
    stale = [s for s in states if not s.alive]
    running = [s for s in states if s.alive]
    servers = [s for s in running if s.record.role == "server"]
    parts = [f"{len(running)} running ({', '.join(s.record.name for s in running)})"]
    if stale:
        parts.append(
            "stale: " + ", ".join(f"{s.record.name} ({s.reason})" for s in stale)
        )
    if not servers:
        parts.append("no server running")
    return ComponentStatus(
        "processes",
        "run dir",
        ok=not stale and bool(servers),
        detail="; ".join(parts),
        figures={
            "run_dir": where,
            "running": len(running),
            "stale": len(stale),
            "servers": len(servers),
            "processes": [
                {
                    "name": s.record.name,
                    "role": s.record.role,
                    "pid": s.record.pid,
                    "status": "running" if s.alive else "stale",
                    "uptime_seconds": None if s.uptime is None else round(s.uptime, 1),
                    "rss_bytes": s.rss,
                    "restarts": s.record.restarts,
                }
                for s in states
            ],
        },
    )


def _no_broker(name: str) -> ComponentStatus:
    return ComponentStatus(
        name,
        "none",
        ok=True,
        configured=False,
        detail="no broker (CELERY_BROKER_URL): jobs run in-process",
    )


def worker_stats(timeout: float = WORKER_TIMEOUT) -> dict[str, dict]:
    """Return each worker that answers a ping within ``timeout`` seconds, with its
    pool concurrency, tasks processed since it started and tasks running now."""
    replies = celery_app.control.inspect(timeout=timeout).ping() or {}
    if not replies:
        return {}
    # Ask only the workers that answered, and stop waiting once all of them have.
    inspect = celery_app.control.inspect(
        destination=sorted(replies), timeout=timeout, limit=len(replies)
    )
    stats = inspect.stats() or {}
    active = inspect.active() or {}
    workers = {}
    for name in sorted(replies):
        worker = stats.get(name, {})
        workers[name] = {
            "concurrency": worker.get("pool", {}).get("max-concurrency"),
            "processed": sum(worker.get("total", {}).values()),
            "active": len(active.get(name, [])),
            "pid": worker.get("pid"),
        }
    return workers


def check_workers(timeout: float = WORKER_TIMEOUT) -> ComponentStatus:
    if not settings.STAGEHAND_HAS_BROKER:
        return _no_broker("workers")
    backend = settings.CELERY_BROKER_URL.split("://", 1)[0]

    figures: dict = {}

    def probe() -> str:
        workers = worker_stats(timeout)
        figures.update({"workers": workers, "count": len(workers)})
        if not workers:
            raise RuntimeError(f"no worker answered a ping within {timeout:g} s")
        return "; ".join(
            f"{name}: concurrency {w['concurrency']}, processed {w['processed']}, "
            f"active {w['active']}"
            for name, w in workers.items()
        )

    return _with_figures(_timed("workers", backend, probe), figures)


def check_queues() -> ComponentStatus:
    """Tasks waiting in each Celery queue, read by the jobs app from the broker."""
    if not settings.STAGEHAND_HAS_BROKER:
        return _no_broker("queues")
    backend = settings.CELERY_BROKER_URL.split("://", 1)[0]
    figures: dict = {}

    def probe() -> str:
        queues = jobs.queue_status()
        figures.update({"waiting": {q.queue: q.waiting for q in queues}})
        return ", ".join(f"{q.queue}: {q.waiting} waiting" for q in queues)

    return _with_figures(_timed("queues", backend, probe), figures)


def check_beat() -> ComponentStatus:
    """Celery Beat: its last tick and the last job it sent.

    The beat renews a database lease on every tick (``apps.jobs.beat``), so the lease
    tells when it last ticked; no live lease means no beat has ticked for
    ``BEAT_LOCK_TTL`` seconds.
    """
    if not settings.STAGEHAND_HAS_BROKER:
        return _no_broker("beat")
    figures: dict = {}

    def probe() -> str:
        ttl = float(settings.BEAT_LOCK_TTL)
        lease = jobs.beat_lock_holder()
        last_sent = PeriodicTask.objects.aggregate(last=Max("last_run_at"))["last"]
        last_tick = lease["expires_at"] - timedelta(seconds=ttl) if lease else None
        figures.update(
            {
                "holder": lease["holder"] if lease else None,
                "last_tick": last_tick.isoformat() if last_tick else None,
                "last_sent": last_sent.isoformat() if last_sent else None,
            }
        )
        sent = f"last job sent {last_sent:%Y-%m-%d %H:%M:%S}" if last_sent else ""
        if lease is None:
            raise RuntimeError(
                f"no beat has ticked in the last {ttl:g} s"
                + (f"; {sent}" if sent else "")
            )
        return f"{lease['holder']}, last tick {last_tick:%H:%M:%S}" + (
            f"; {sent}" if sent else ""
        )

    return _with_figures(_timed("beat", "django-celery-beat", probe), figures)


def check_connections() -> ComponentStatus:
    """Live WebSocket connections per deploy label, from the connections registry."""
    backend = settings.CHANNEL_LAYERS["default"]["BACKEND"].rsplit(".", 1)[-1]
    try:
        connections.require_shared_layer()
    except connections.LayerUnavailable:
        return ComponentStatus(
            "connections",
            backend,
            ok=True,
            configured=False,
            detail="in-memory channel layer: connections of other processes unseen",
        )
    figures: dict = {}

    def probe() -> str:
        labels = connections.list_labels()
        figures.update(
            {
                "labels": {c.label: c.connections for c in labels},
                "total": sum(c.connections for c in labels),
                "current_label": connections.current_label(),
            }
        )
        if not labels:
            return "no live connections"
        return ", ".join(f"{c.label}: {c.connections}" for c in labels)

    return _with_figures(_timed("connections", backend, probe), figures)


def _with_figures(status: ComponentStatus, figures: dict) -> ComponentStatus:
    status.figures.update(figures)
    return status


def collect_stats() -> list[ComponentStatus]:
    """Return one status per component of the backend, in a stable order."""
    return [
        check_processes(),
        check_workers(),
        check_queues(),
        check_beat(),
        check_connections(),
        check_database(),
        check_cache(),
        check_channel_layer(),
        check_broker(),
        check_storage(),
    ]
