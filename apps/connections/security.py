"""Which web pages may open a world's WebSocket.

A browser always sends ``Origin`` with a WebSocket handshake, and a page of another
site must not be able to open a socket with the attendee's token. Origins whose host
is in ``ALLOWED_HOSTS``, or is the domain of the world being connected to, pass;
other origins are refused with HTTP 403 before the consumer runs. A handshake with no
``Origin`` does not come from a browser page (a script, a native client, a test) and
is let through, since the token is what authenticates it.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import is_same_domain

from apps.worlds.services import WorldNotFound, is_possible_world_id

from .snapshots import snapshots

logger = logging.getLogger(__name__)

WORLD_PATH = re.compile(r"^/ws/world/(?P<world_id>[^/]+)/")


class WorldOriginValidator:
    def __init__(self, application: Any):
        self.application = application

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        origin = _origin(scope)
        if origin is None or await self._allowed(origin, scope.get("path", "")):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)

    async def _allowed(self, origin: str, path: str) -> bool:
        try:
            return await self.allowed(origin, path)
        except Exception:
            # The database away, say: refuse (403) rather than answer HTTP 500.
            logger.exception("Checking the origin %r of %r failed", origin, path)
            return False

    async def allowed(self, origin: str, path: str) -> bool:
        try:
            parts = urlsplit(origin)
            host = parts.hostname
        except ValueError:
            return False  # not a URL, such as "http://[::1": no page has it
        if parts.scheme not in ("http", "https") or not host:
            return False
        if any(
            pattern == "*" or is_same_domain(host, pattern)
            for pattern in settings.ALLOWED_HOSTS
        ):
            return True
        match = WORLD_PATH.match(path)
        if not match or not is_possible_world_id(match["world_id"]):
            return False
        domain = await _world_domain(match["world_id"])
        if not domain:
            return False
        # A world's domain may carry a port ("localhost:8000"); then it must match too.
        return parts.netloc.lower() == domain if ":" in domain else host == domain


def _origin(scope: dict) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"origin":
            return value.decode("latin1")
    return None


async def _world_domain(world_id: str) -> str | None:
    # From the process's snapshot of the world, which the consumer reads next anyway.
    try:
        snapshot = await snapshots().world(world_id)
    except WorldNotFound:
        return None
    domain = snapshot.world.domain
    return domain.lower() if domain else None
