"""Health of the components Stagehand is configured to use.

``info``, ``/readyz`` and (later) ``stats`` ask the same questions: each check talks to
its component for real, with a short timeout, and never raises.
"""

from __future__ import annotations

import platform
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from django.conf import settings


@dataclass
class ComponentStatus:
    name: str
    backend: str
    ok: bool
    detail: str = ""
    configured: bool = True
    figures: dict = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "OK" if self.ok else "FAIL"

    def as_dict(self) -> dict:
        return {**asdict(self), "status": self.status}


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
    from django.db import connections

    described = database_description(alias)

    def probe() -> str:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return (
            connections[alias].display_name
            + " "
            + ".".join(str(part) for part in connections[alias].get_database_version())
        )

    status = _timed("database", described["engine"], probe)
    status.figures.update(described)
    return status


def check_cache() -> ComponentStatus:
    from django.core.cache import cache

    backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]

    def probe() -> str:
        key = f"stagehand:health:{uuid.uuid4().hex}"
        cache.set(key, "1", timeout=5)
        if cache.get(key) != "1":
            raise RuntimeError("value written was not read back")
        cache.delete(key)
        return settings.CACHES["default"].get("LOCATION", "") and _redact(
            settings.CACHES["default"]["LOCATION"]
        )

    return _timed("cache", backend, probe)


def check_channel_layer() -> ComponentStatus:
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    backend = settings.CHANNEL_LAYERS["default"]["BACKEND"].rsplit(".", 1)[-1]

    async def roundtrip() -> None:
        import asyncio

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
            _redact(str(h))
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
            detail="not configured: jobs run in-process",
        )
    from config.celery_app import app

    url = settings.CELERY_BROKER_URL
    backend = url.split("://", 1)[0]

    def probe() -> str:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
        return _redact(url)

    return _timed("broker", backend, probe)


def check_storage() -> ComponentStatus:
    from django.core.files.storage import storages

    storage = storages["default"]
    backend = type(storage).__name__

    def probe() -> str:
        if hasattr(storage, "bucket"):
            storage.connection.meta.client.head_bucket(Bucket=storage.bucket_name)
            return f"s3://{storage.bucket_name}/{storage.location}"
        # A local folder: make sure it exists and is writable.
        from pathlib import Path

        root = Path(storage.location)
        root.mkdir(parents=True, exist_ok=True)
        probe_file = root / f".health-{uuid.uuid4().hex}"
        probe_file.write_bytes(b"")
        probe_file.unlink()
        return str(root)

    return _timed("storage", backend, probe)


def _redact(url: str) -> str:
    """Hide the password of a URL such as redis://:secret@host:6379/0."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def readiness_checks() -> list[ComponentStatus]:
    """Return the checks a load balancer needs before sending traffic."""
    return [check_database(), check_cache(), check_channel_layer(), check_broker()]


def collect_info() -> dict:
    """Return versions, configuration and the status of every configured component."""
    import celery
    import channels
    import django

    from apps.core import __version__

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
