"""The attendees' live WebSocket at ``ws/world/<world_id>/``.

Frames are JSON arrays ``[action, id, payload]``; ``ping`` and ``authenticate`` have
no id (``["ping", ts]``, ``["authenticate", {"token": ...}]``); ``frames.py`` checks
every one before a handler sees it. Replies are ``["success", id, payload]`` or
``["error", id, {"code": ..., "message": ...}]`` (without the id when the request had
none). A bad frame gets an error frame and the connection stays usable, and so does
a handler that fails unexpectedly (``server.error``, logged with its traceback);
only an unknown world, an oversized frame, a replaced, dropped or reloaded
connection, or a failure to open it closes it, with the close codes below. A Redis
outage closes nothing either (``outage.py``).

When current terms (``import_terms``) are not accepted yet, ``authenticate`` answers
``["auth.terms_required", {"terms": [...]}]`` instead of ``authenticated``; the client
accepts with ``["auth.accept_terms", {"terms": [id, ...]}]`` (no id either) and then
gets ``authenticated``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from . import frames, outage, services
from .frames import Frame, FrameError
from .hub import hub_for
from .layer import REDIS_ERRORS
from .models import ChatMessage
from .registry import get_registry

logger = logging.getLogger(__name__)

CLOSE_DROPPED = 1001  # going away: the client should reconnect (to any server)
CLOSE_TOO_LARGE = 1009
CLOSE_SERVER_ERROR = 1011  # the connection could not be opened: reconnect later
CLOSE_REPLACED = 4001  # connection_limit: the client should not reconnect by itself
CLOSE_UNKNOWN_WORLD = 4004

CHAT_MODULE = "chat.native"
SERVER_ERROR = "server.error"


class WorldConsumer(AsyncWebsocketConsumer):
    # Set here, not in __init__, so a connection costs no more than it must.
    world = None
    user_id = None
    # (user_id, traits, welcome, limit) of a token whose terms await acceptance.
    pending_auth = None
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
    reload_task = None
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
        from apps.worlds.services import WorldNotFound

        self.label = services.current_label()
        self.entered: dict[str, int] = {}
        self.chat_groups: set[str] = set()  # the entered rooms' groups it is in
        world_id = self.scope["url_route"]["kwargs"]["world_id"]
        try:
            self.world = await _get_world(world_id)
        except WorldNotFound:
            # Accept, so that the client can be told why it is closed.
            await self._accept()
            await self._error(None, "world.unknown_world", f"No world {world_id!r}.")
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

    async def disconnect(self, code: int) -> None:
        await self._leave()

    async def _leave(self) -> None:
        """Leave the hub, the registry and the rooms' groups; again does nothing."""
        if self.reload_task is not None:
            self.reload_task.cancel()
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
                        _room_group(room_pk), self.channel_name
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
            await self._handle(frame)
        except FrameError as exc:
            if exc.frame_id is not None:
                frame_id = exc.frame_id
            await self._error(frame_id, exc.code, exc.message)
            if exc.code == frames.TOO_LARGE:
                await self._close(CLOSE_TOO_LARGE)
        except REDIS_ERRORS:
            await self._error(frame_id, "service.unavailable", outage.UNAVAILABLE)
        except Exception:
            # A bug or a failing service must not end the connection.
            logger.exception("A frame failed on connection %s", self.channel_name)
            await self._error(
                frame_id,
                SERVER_ERROR,
                "The server failed to handle this frame (it has been logged); "
                "the connection is still usable.",
            )

    async def _handle(self, frame: Frame) -> None:
        if frame.action == "ping":
            await self._send(["pong", frame.id])
            return
        if frame.action == "authenticate":
            await self.authenticate(frame.payload)
            return
        if frame.action == "auth.accept_terms":
            await self.accept_terms(frame.payload)
            return
        if self.user_id is None:
            raise FrameError(
                "protocol.unauthenticated", "Send authenticate before anything else."
            )
        handler = HANDLERS.get(frame.action)
        if handler is None:
            raise FrameError(
                "protocol.unknown_action", f"Unknown action {frame.action!r}."
            )
        reply = await handler(self, frame.payload)
        await self._send(["success", frame.id, reply])

    async def authenticate(self, payload: dict) -> None:
        from apps.worlds.services import TokenError

        if self.user_id is not None:
            raise FrameError("protocol.already_authenticated", "Already authenticated.")
        try:
            user_id, traits, welcome, limit = await _authenticate(
                self.world, payload.get("token")
            )
        except TokenError as exc:
            raise FrameError(exc.code, exc.message) from None
        pending = await _pending_terms(user_id)
        if pending:
            # Not authenticated until the current terms are accepted (accept_terms).
            self.pending_auth = (user_id, traits, welcome, limit)
            await self._send(["auth.terms_required", {"terms": pending}])
            return
        await self._authenticated(user_id, traits, welcome, limit)

    async def accept_terms(self, payload: dict) -> None:
        from apps.accounts.services import TermsError

        if self.pending_auth is None:
            raise FrameError(
                "auth.no_terms_pending", "There are no terms waiting to be accepted."
            )
        try:
            pending = await _accept_terms(self.pending_auth[0], payload["terms"])
        except TermsError as exc:
            raise FrameError("auth.invalid_terms", str(exc)) from None
        if pending:
            await self._send(["auth.terms_required", {"terms": pending}])
            return
        user_id, traits, welcome, limit = self.pending_auth
        self.pending_auth = None
        await self._authenticated(user_id, traits, welcome, limit)

    async def _authenticated(self, user_id, traits, welcome, limit) -> None:
        self.user_id, self.traits = user_id, traits
        await self._send(["authenticated", welcome])
        self.slot_user, self.slot_limit, self.slot_since = user_id, limit, time.time()
        async with outage.tolerated("claim a connection_limit slot"):
            await outage.claim_slot(self)

    async def room_enter(self, payload: dict) -> dict:
        room = await _find_room(self.world, self.traits, payload["room"])
        if "room:chat.read" in room["permissions"]:
            group = _room_group(room["pk"])
            self.chat_groups.add(group)
            # With Redis away, the chat is joined when it is back (layer_restored).
            async with outage.tolerated("join a room's chat"):
                await self.channel_layer.group_add(group, self.channel_name)
        self.entered[room["id"]] = room["pk"]
        return {"room": room["id"]}

    async def room_leave(self, payload: dict) -> dict:
        room_id = payload["room"]
        room_pk = self.entered.get(room_id)
        if room_pk is None:
            raise FrameError("room.not_entered", f"You are not in room {room_id!r}.")
        # Left only once Redis has it: with Redis away the room stays entered.
        await self.channel_layer.group_discard(_room_group(room_pk), self.channel_name)
        del self.entered[room_id]
        self.chat_groups.discard(_room_group(room_pk))
        return {"room": room_id}

    async def chat_send(self, payload: dict) -> dict:
        room_id, text = payload["room"], payload["text"]
        if room_id not in self.entered:
            raise FrameError("room.not_entered", f"Enter room {room_id!r} first.")
        message = await _post_chat(self.world, self.user_id, self.traits, room_id, text)
        try:
            await self.channel_layer.group_send(
                _room_group(self.entered[room_id]),
                {"type": "chat.message", "message": message},
            )
        except REDIS_ERRORS:
            await _withdraw_chat(message["id"])  # not delivered, so not kept either
            raise
        return {"message": message}

    # Messages from the channel layer ---------------------------------------------

    async def chat_message(self, event: dict) -> None:
        await self._send(["chat.message", event["message"]])

    async def connections_drop(self, event: dict) -> None:
        await self._close(CLOSE_DROPPED)

    async def layer_unavailable(self, event: dict) -> None:
        await self._send(["connection.degraded", outage.DEGRADED])

    async def layer_restored(self, event: dict) -> None:
        if await outage.restore(self):
            await self._send(["connection.restored", {}])

    # Called by this process's hub (a drop or reload of the whole label) ----------

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

    async def tell_reload(self) -> None:
        await self._send(["connection.reload", {}])

    async def connections_reload(self, event: dict) -> None:
        await self._send(["connection.reload", {}])
        if self.reload_task is None:
            self.reload_task = asyncio.ensure_future(self._close_later())

    async def connections_replaced(self, event: dict) -> None:
        await self._send(["connection.replaced", {}])
        await self._close(CLOSE_REPLACED)

    # Helpers ---------------------------------------------------------------------

    async def _close_later(self) -> None:
        await asyncio.sleep(settings.CONNECTIONS_RELOAD_GRACE)
        await self._close(CLOSE_DROPPED)

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
            await get_registry().beat(self.label, self.channel_name)

    async def _send(self, frame: list) -> None:
        if self.accepted and not self.closing:
            await self.send(text_data=json.dumps(frame, default=str))

    async def _error(self, frame_id: Any, code: str, message: str) -> None:
        body = {"code": code, "message": message}
        await self._send(
            ["error", body] if frame_id is None else ["error", frame_id, body]
        )


HANDLERS = {
    "room.enter": WorldConsumer.room_enter,
    "room.leave": WorldConsumer.room_leave,
    "chat.send": WorldConsumer.chat_send,
}


def _room_group(room_pk: int) -> str:
    return f"room.{room_pk}"


# Database work, each in one sync call -------------------------------------------


@database_sync_to_async
def _get_world(world_id: str):
    from apps.worlds.services import get_world

    return get_world(world_id)


@database_sync_to_async
def _pending_terms(user_id: int) -> list[dict]:
    from apps.accounts.services import pending_terms_for

    return pending_terms_for(user_id)


@database_sync_to_async
def _accept_terms(user_id: int, ids: list[int]) -> list[dict]:
    from apps.accounts.services import accept_terms_for

    return accept_terms_for(user_id, ids)


@database_sync_to_async
def _authenticate(world, token: Any) -> tuple[int, list[str], dict, int | None]:
    """Verify ``token``; return the attendee's id, traits, welcome payload and limit."""
    from apps.worlds import services as worlds

    claims = worlds.verify_token(world, token)
    user = worlds.get_or_create_attendee(world, claims)
    traits = list(user.traits)
    permissions = worlds.permissions_for(world, traits)
    rooms = [
        {
            "id": room.import_id,
            "name": room.name,
            "description": room.description,
            "modules": [
                {"type": m.get("type"), "config": m.get("config", {})}
                for m in room.modules
                if isinstance(m, dict)
            ],
        }
        for room in worlds.visible_rooms(world, traits)
    ]
    limit = (world.config or {}).get("connection_limit") or None
    if "world:connections.unlimited" in permissions:
        limit = None
    welcome = {
        "world": {"id": world.id, "title": world.title},
        "user": {"id": user.pk, "traits": traits},
        "permissions": sorted(permissions),
        "rooms": rooms,
    }
    return user.pk, traits, welcome, limit


@database_sync_to_async
def _withdraw_chat(message_id: int) -> None:
    ChatMessage.objects.filter(pk=message_id).delete()


@database_sync_to_async
def _find_room(world, traits: list[str], room_id: Any) -> dict:
    from apps.worlds import services as worlds

    room = _room_or_error(world, traits, room_id)
    return {
        "pk": room.pk,
        "id": room.import_id,
        "permissions": worlds.permissions_for(world, traits, room),
    }


def _room_or_error(world, traits: list[str], room_id: Any):
    from apps.worlds import services as worlds

    if isinstance(room_id, str):
        for room in worlds.visible_rooms(world, traits):
            if room.import_id == room_id:
                return room
    raise FrameError("room.unknown_room", f"No room {room_id!r} you may enter.")


@database_sync_to_async
def _post_chat(world, user_id: int, traits: list[str], room_id: str, text: str) -> dict:
    from apps.worlds import services as worlds

    from .models import ChatMessage

    room = _room_or_error(world, traits, room_id)
    if not any(
        isinstance(m, dict) and m.get("type") == CHAT_MODULE for m in room.modules
    ):
        raise FrameError("chat.unavailable", f"Room {room_id!r} has no chat.")
    if "room:chat.send" not in worlds.permissions_for(world, traits, room):
        raise FrameError("chat.denied", f"You may not write in room {room_id!r}.")
    message = ChatMessage.objects.create(room=room, sender_id=user_id, text=text)
    return {
        "id": message.pk,
        "room": room.import_id,
        "sender": user_id,
        "text": message.text,
        "created_at": message.created_at.isoformat(),
    }
