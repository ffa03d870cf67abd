"""``room.enter`` and ``room.leave``: the rooms an attendee is in, and their chats.

Rooms come from the world's current snapshot (``snapshots.py``), so entering one
needs no query, and a room added or removed since the client connected is seen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from apps.worlds.services import WorldNotFound

from .. import outage
from ..frames import FrameError
from ..snapshots import RoomView, Snapshot, snapshots

if TYPE_CHECKING:
    from ..consumers import WorldConsumer


def group(room_pk: int) -> str:
    """Return the channel-layer group of the room's chat."""
    return f"room.{room_pk}"


async def find_room(consumer: WorldConsumer, room_id: Any) -> tuple[Snapshot, RoomView]:
    """Return the world's current snapshot and the room ``room_id`` the attendee may
    view, or raise ``room.unknown_room``."""
    try:
        snapshot = await snapshots().world(consumer.world.id)
    except WorldNotFound:
        snapshot = None  # deleted since: none of its rooms may be entered
    room = snapshot.room(consumer.traits, room_id) if snapshot else None
    if room is None:
        raise FrameError("room.unknown_room", f"No room {room_id!r} you may enter.")
    return snapshot, room


async def enter(consumer: WorldConsumer, payload: dict) -> dict:
    snapshot, room = await find_room(consumer, payload["room"])
    if "room:chat.read" in snapshot.permissions(consumer.traits, room):
        chat = group(room.pk)
        consumer.chat_groups.add(chat)
        # With Redis away, the chat is joined when it is back (layer_restored).
        async with outage.tolerated("join a room's chat"):
            await consumer.channel_layer.group_add(chat, consumer.channel_name)
    consumer.entered[room.id] = room.pk
    return {"room": room.id}


async def leave(consumer: WorldConsumer, payload: dict) -> dict:
    room_id = payload["room"]
    room_pk = consumer.entered.get(room_id)
    if room_pk is None:
        raise FrameError("room.not_entered", f"You are not in room {room_id!r}.")
    # Left only once Redis has it: with Redis away the room stays entered.
    await consumer.channel_layer.group_discard(group(room_pk), consumer.channel_name)
    del consumer.entered[room_id]
    consumer.chat_groups.discard(group(room_pk))
    return {"room": room_id}
