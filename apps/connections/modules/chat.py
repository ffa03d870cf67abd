"""``chat.send`` and the ``chat.message`` deliveries of the rooms' chats."""

from __future__ import annotations

from typing import TYPE_CHECKING

from channels.db import database_sync_to_async

from .. import services
from ..frames import FrameError
from ..layer import REDIS_ERRORS
from ..protocol import CHAT_MESSAGE
from .rooms import find_room, group

if TYPE_CHECKING:
    from ..consumers import WorldConsumer

store = database_sync_to_async(services.post_chat_message)
withdraw = database_sync_to_async(services.withdraw_chat_message)


async def send(consumer: WorldConsumer, payload: dict) -> dict:
    room_id, text = payload["room"], payload["text"]
    if room_id not in consumer.entered:
        raise FrameError("room.not_entered", f"Enter room {room_id!r} first.")
    snapshot, room = await find_room(consumer, room_id)
    if not room.has_chat:
        raise FrameError("chat.unavailable", f"Room {room_id!r} has no chat.")
    if "room:chat.send" not in snapshot.permissions(consumer.traits, room):
        raise FrameError("chat.denied", f"You may not write in room {room_id!r}.")
    message = await store(room.pk, room.id, consumer.user_id, text)
    try:
        await consumer.channel_layer.group_send(
            group(consumer.entered[room_id]),
            {"type": CHAT_MESSAGE, "message": message},
        )
    except REDIS_ERRORS:
        await withdraw(message["id"])  # not delivered, so not kept either
        raise
    return {"message": message}


async def deliver(consumer: WorldConsumer, event: dict) -> None:
    await consumer.send_frame(["chat.message", event["message"]])
