"""The attendees' live WebSocket at ``ws/world/<world_id>/``.

Frames are JSON arrays ``[action, id, payload]``; ``ping`` and ``authenticate`` have
no id (``["ping", ts]``, ``["authenticate", {"token": ...}]``); ``frames.py`` checks
every one before a handler sees it. Replies are ``["success", id, payload]`` or
``["error", id, {"code": ..., "message": ...}]`` (without the id when the request had
none). A bad frame gets an error frame and the connection stays usable, and so does
a handler that fails unexpectedly (``server.error``, logged with its traceback);
only an unknown world, an oversized frame, a replaced, dropped or reloaded
connection, no valid token in time, or a failure to open it closes it, with the
close codes of ``protocol.py``. A Redis outage closes nothing either
(``outage.py``).

When current terms (``import_terms``) are not accepted yet, ``authenticate`` answers
``["auth.terms_required", {"terms": [...]}]`` instead of ``authenticated``; the client
accepts with ``["auth.accept_terms", {"terms": [id, ...]}]`` (no id either) and then
gets ``authenticated``.

A socket that has sent no valid token ``CONNECTIONS_AUTH_TIMEOUT`` seconds after it
opened gets ``auth.timeout`` and is closed with 4008, so that idle sockets cannot
hold the process's pending handshakes (``CONNECTIONS_MAX_PENDING``) and make it
answer every real attendee with 1013. One ``loop.call_later`` timer per pending
socket, cancelled when its token is verified or it leaves: a heap entry, no task
(measured: docs/benchmarks.md, "The authentication deadline").
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from apps.worlds.services import WorldNotFound

from . import frames, outage, services
from .frames import Frame, FrameError
from .hub import hub_for
from .layer import REDIS_ERRORS
from .modules import auth, chat, rooms
from .protocol import (
    AUTH_TIMEOUT,
    CLOSE_AUTH_TIMEOUT,
    CLOSE_DROPPED,
    CLOSE_REPLACED,
    CLOSE_SERVER_ERROR,
    CLOSE_TOO_LARGE,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNKNOWN_WORLD,
    SERVER_BUSY,
    SERVER_ERROR,
    SERVICE_UNAVAILABLE,
    UNAUTHENTICATED,
    UNKNOWN_ACTION,
    UNKNOWN_WORLD,
    Move,
)
from .snapshots import snapshots

logger = logging.getLogger(__name__)

# Handshakes of this process not authenticated yet (CONNECTIONS_MAX_PENDING).
_pending = 0

# The actions of an authenticated client, each answered with ["success", id, reply].
ROUTES = {
    "room.enter": rooms.enter,
    "room.leave": rooms.leave,
    "chat.send": chat.send,
}
# Those that come before authentication, without an id; they answer themselves.
BEFORE_AUTH = {
    "authenticate": auth.authenticate,
    "auth.accept_terms": auth.accept_terms,
}


class WorldConsumer(AsyncWebsocketConsumer):
    # Set here, not in __init__, so a connection costs no more than it must.
    world = None  # the world's Snapshot, as of the handshake
    user_id = None
    pending_auth = None  # the Attendee of a token whose terms await acceptance
    traits: list[str] = []
    registered = False  # counted under its label in the registry
    slot_user = None  # the attendee whose connection_limit slot this holds
    slot_limit = None  # and that slot's limit and when it was first claimed
    slot_since = 0.0
    hub = None
    accepted = False
    closing = False
    close_when_accepted = False
    last_beat = 0.0
    moving = False  # a drop or reload of this connection alone has started
    pending = False  # counted in _pending: connected, not authenticated yet
    auth_deadline = None  # its timer (asyncio.TimerHandle) while pending
    authenticating = False  # an authenticate or accept_terms frame is being handled
    overdue = False  # the deadline passed while authenticating: close if that fails
    expiry = None  # the task closing it once its deadline passed
    label = None
    entered: dict[str, int] = {}  # replaced per connection, never changed in place

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        # Whatever ends the consumer (a disconnect, a crash, a cancelled task, a
        # transport error), its connection leaves the count at once instead of
        # waiting for the heartbeat window.
        try:
            await super().__call__(scope, receive, send)
        finally:
            try:
                await self._leave()
            except Exception:
                # Redis away, say: the heartbeat window ages the entry out instead.
                logger.exception("A closed connection could not leave the registry")

    async def dispatch(self, message: dict) -> None:
        # channels closes stale database connections before every handler, a hop
        # to the one sync thread each time (and again on disconnect), which made a
        # drop of 2,000 sockets spend half its time there. Every database call of
        # this consumer goes through database_sync_to_async, which closes them in
        # that thread before and after the call, so the hops are skipped.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            # From another process, perhaps of another build during a deploy.
            logger.warning("Ignored a message of unknown type %r", message["type"])
            return
        if message["type"].startswith("websocket."):
            await handler(message)  # each handles its own errors (receive, connect)
            return
        try:
            await handler(message)
        except Exception:
            # One bad message from the channel layer does not end the connection.
            logger.exception("Handling a %r message failed", message["type"])

    async def websocket_disconnect(self, message: dict) -> None:
        # As channels' own, without its hop (see dispatch); no self.groups here.
        await self.disconnect(message["code"])
        raise StopConsumer()

    async def connect(self) -> None:
        try:
            await self._connect()
        except Exception:
            logger.exception(
                "Opening a connection to world %r failed",
                self.scope["url_route"]["kwargs"].get("world_id"),
            )
            # Never an HTTP 500 for the handshake: say so, then close.
            if not self.accepted:
                await self._accept()
            await self._error(
                None, SERVER_ERROR, "The server could not open this connection; retry."
            )
            await self._close(CLOSE_SERVER_ERROR)

    async def _connect(self) -> None:
        global _pending
        if 0 < settings.CONNECTIONS_MAX_PENDING <= _pending:
            await self._busy()
            return
        _pending += 1
        self.pending = True
        self.label = services.current_label()
        self.entered: dict[str, int] = {}
        self.chat_groups: set[str] = set()  # the entered rooms' groups it is in
        world_id = self.scope["url_route"]["kwargs"]["world_id"]
        try:
            self.world = await snapshots().world(world_id)
        except WorldNotFound:
            # Accept, so that the client can be told why it is closed.
            await self._accept()
            await self._error(None, UNKNOWN_WORLD, f"No world {world_id!r}.")
            await self._close(CLOSE_UNKNOWN_WORLD)
            return
        # Reachable (through this process's hub) and counted before accepting: an
        # open socket can always be dropped.
        self.last_beat = time.monotonic()
        self.hub = await hub_for(self.channel_layer)
        await self.hub.add(self)
        async with outage.tolerated("register"):
            await services.register(self.label, self.channel_name)
        # Counted from now on; with Redis away, from when it is back (layer_restored).
        self.registered = True
        await self._accept()
        if self.close_when_accepted:
            await self._close(CLOSE_DROPPED)
            return
        timeout = settings.CONNECTIONS_AUTH_TIMEOUT
        if timeout > 0:
            # From the moment the client can send: what it does not send by then,
            # it is not going to.
            self.auth_deadline = asyncio.get_running_loop().call_later(
                timeout, self._deadline_passed
            )

    async def _busy(self) -> None:
        """Refuse a handshake of an overloaded process: 1013 with a hint."""
        later = services.default_spread_ms(_pending) or 1000
        await self._accept()
        await self.send_frame(
            [
                "error",
                {
                    "code": SERVER_BUSY,
                    "message": "This server is busy; reconnect after "
                    "reconnect_after_ms milliseconds.",
                    "reconnect_after_ms": random.randint(later // 2, later),
                },
            ]
        )
        await self._close(CLOSE_TRY_AGAIN_LATER)

    def identified(self) -> None:
        """Its token is verified (``authenticated``, or terms still to accept): it no
        longer counts as pending, and its authentication deadline is off."""
        self._stop_pending()

    def _stop_pending(self) -> None:
        """Leave the pending handshakes and cancel the deadline; again does nothing."""
        global _pending
        deadline, self.auth_deadline = self.auth_deadline, None
        if deadline is not None:
            deadline.cancel()
        if self.pending:
            self.pending = False
            _pending -= 1

    def _deadline_passed(self) -> None:
        """No valid token within ``CONNECTIONS_AUTH_TIMEOUT``: close the socket.

        One being authenticated right now (its frame came in time, the server is
        slow, as in a rush) is closed only if that attempt fails. The pending slot
        is freed here, before the close frame goes out: a client that does not read
        cannot hold it.
        """
        self.auth_deadline = None
        if not self.pending or self.closing:
            return
        if self.authenticating:
            self.overdue = True
            return
        self._stop_pending()
        self.expiry = asyncio.get_running_loop().create_task(self._expire())

    async def _expire(self) -> None:
        try:
            timeout = settings.CONNECTIONS_AUTH_TIMEOUT
            await self._error(
                None,
                AUTH_TIMEOUT,
                f"No valid token within {timeout:g} seconds of connecting; "
                "reconnect and send authenticate at once.",
            )
            await self._close(CLOSE_AUTH_TIMEOUT)
        except Exception:
            # The socket went away meanwhile: nothing is left to close.
            logger.debug("Closing an unauthenticated socket failed", exc_info=True)

    async def disconnect(self, code: int) -> None:
        await self._leave()

    async def _leave(self) -> None:
        """Leave the hub, the registry and the rooms' groups; again does nothing."""
        self._stop_pending()  # first, before anything can fail
        if self.hub is not None:
            self.hub.discard(self)
        registered, self.registered = self.registered, False
        user, self.slot_user = self.slot_user, None
        # With Redis away there is nothing to undo: a restart forgets it all, and
        # otherwise the registry entry ages out of the count.
        if registered or user is not None:
            async with outage.tolerated("unregister"):
                await services.unregister(self.label, [(self.channel_name, user)])
        entered, self.entered = self.entered, {}
        if entered:
            async with services.gate(), outage.tolerated("leave its rooms"):
                for room_pk in entered.values():
                    await self.channel_layer.group_discard(
                        rooms.group(room_pk), self.channel_name
                    )

    # Frames from the client ------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data=None) -> None:
        if self.closing:
            return
        frame_id = None
        try:
            if self.registered and (
                time.monotonic() - self.last_beat
                >= settings.CONNECTIONS_HEARTBEAT_REFRESH
            ):
                await self._beat()
            frame = frames.parse(
                text_data, bytes_data, settings.CONNECTIONS_MAX_FRAME_BYTES
            )
            if frame.action != "ping":
                frame_id = frame.id
            await self._route(frame)
        except FrameError as exc:
            if exc.frame_id is not None:
                frame_id = exc.frame_id
            await self._error(frame_id, exc.code, exc.message)
            if exc.code == frames.TOO_LARGE:
                await self._close(CLOSE_TOO_LARGE)
        except REDIS_ERRORS:
            await self._error(frame_id, SERVICE_UNAVAILABLE, outage.UNAVAILABLE)
        except Exception:
            # A bug or a failing service must not end the connection.
            logger.exception("A frame failed on connection %s", self.channel_name)
            await self._error(
                frame_id,
                SERVER_ERROR,
                "The server failed to handle this frame (it has been logged); "
                "the connection is still usable.",
            )
        if self.overdue and self.pending:
            # Its deadline passed while this attempt ran, and it failed.
            self._stop_pending()
            await self._expire()

    async def _route(self, frame: Frame) -> None:
        if frame.action == "ping":
            await self.send_frame(["pong", frame.id])
            return
        before_auth = BEFORE_AUTH.get(frame.action)
        if before_auth is not None:
            self.authenticating = True
            try:
                await before_auth(self, frame.payload)
            finally:
                self.authenticating = False
            return
        if self.user_id is None:
            raise FrameError(UNAUTHENTICATED, "Send authenticate before anything else.")
        handler = ROUTES.get(frame.action)
        if handler is None:
            raise FrameError(UNKNOWN_ACTION, f"Unknown action {frame.action!r}.")
        reply = await handler(self, frame.payload)
        await self.send_frame(["success", frame.id, reply])

    # Messages from the channel layer ---------------------------------------------

    async def chat_message(self, event: dict) -> None:
        await chat.deliver(self, event)

    async def connections_drop(self, event: dict) -> None:
        # Sent to this consumer alone (a paced drop): the hub moves it as one of all.
        self._move(Move.DROP, event.get("reconnect_after_ms"))

    async def connections_reload(self, event: dict) -> None:
        self._move(Move.RELOAD, event.get("reconnect_after_ms"))

    async def connections_replaced(self, event: dict) -> None:
        await self.send_frame(["connection.replaced", {}])
        await self._close(CLOSE_REPLACED)

    async def layer_unavailable(self, event: dict) -> None:
        await self.send_frame(["connection.degraded", outage.DEGRADED])

    async def layer_restored(self, event: dict) -> None:
        if await outage.restore(self):
            await self.send_frame(["connection.restored", {}])

    def _move(self, move: Move, hint_ms: Any) -> None:
        # Once: a second reload must not restart the grace.
        if self.hub is not None and not self.moving:
            self.moving = True
            hint = hint_ms if isinstance(hint_ms, int) and hint_ms >= 0 else None
            self.hub.start(move, self, hint)

    # Called by this process's hub (a drop or reload) --------------------------------

    def detach(self) -> tuple[str, Any]:
        """Return this connection's registry entry, which the hub now removes.

        The hub removes the entries of all the connections it closes at once, so
        this one does not remove its own when it disconnects.
        """
        self.registered = False
        user, self.slot_user = self.slot_user, None
        return self.channel_name, user

    async def close_from_hub(self) -> None:
        if self.accepted:
            await self._close(CLOSE_DROPPED)
        else:
            # Dropped while connecting: close as soon as the socket is open.
            self.close_when_accepted = True

    async def tell_reload(self, hint_ms: int | None = None) -> None:
        await self.send_frame(["connection.reload", _hint(hint_ms)])

    async def tell_drop(self, hint_ms: int) -> None:
        await self.send_frame(["connection.drop", _hint(hint_ms)])

    # Helpers ---------------------------------------------------------------------

    async def _accept(self) -> None:
        await self.accept()
        self.accepted = True

    async def _close(self, code: int) -> None:
        if not self.closing:
            self.closing = True
            await self.close(code)

    async def _beat(self) -> None:
        self.last_beat = time.monotonic()
        async with outage.tolerated("renew its heartbeat"):
            await services.beat(self.label, self.channel_name)

    async def send_frame(self, frame: list) -> None:
        """Send ``frame`` to the client, unless the socket is not open (any more)."""
        if self.accepted and not self.closing:
            await self.send(text_data=json.dumps(frame, default=str))

    async def _error(self, frame_id: Any, code: str, message: str) -> None:
        body = {"code": code, "message": message}
        await self.send_frame(
            ["error", body] if frame_id is None else ["error", frame_id, body]
        )


def _hint(hint_ms: int | None) -> dict:
    """The payload of a drop or reload frame: when to come back, if said."""
    return {} if hint_ms is None else {"reconnect_after_ms": hint_ms}
