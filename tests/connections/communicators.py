"""Attendees on the whole ASGI app in this process, through WebsocketCommunicator."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from config.asgi import application

TIMEOUT = 5


def scenario(coroutine_function):
    """Run an async test body from a sync pytest test (one event loop per test)."""
    return async_to_sync(coroutine_function)()


async def connect(world_id="harborconf", origin=None) -> WebsocketCommunicator:
    headers = [(b"origin", origin.encode())] if origin else []
    comm = WebsocketCommunicator(application, f"/ws/world/{world_id}/", headers=headers)
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected
    return comm


async def ask(comm: WebsocketCommunicator, frame) -> list:
    await comm.send_json_to(frame)
    return await comm.receive_json_from(timeout=TIMEOUT)


async def attendee(token: str) -> WebsocketCommunicator:
    comm = await connect()
    reply = await ask(comm, ["authenticate", {"token": token}])
    assert reply[0] == "authenticated", reply
    return comm
