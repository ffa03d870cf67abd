"""Each process's hub: one channel in the label's group that closes the process's
consumers of that label (apps/connections/hub.py), here on this process's event loop.

With real server processes: test_live.py.
"""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from channels_redis.core import RedisChannelLayer

from apps.connections import services
from apps.connections.consumers import WorldConsumer
from apps.connections.hub import _hubs, collecting_only_new_objects, hub_for
from apps.connections.registry import get_registry, user_key
from apps.connections.services import DROP, RELOAD, current_label, label_group
from config.asgi import application

from .communicators import TIMEOUT, ask, attendee, connect, scenario
from .helpers import read_inbox

CLOSED_DROPPED = {"type": "websocket.close", "code": 1001}


def to_label(kind: str, label: str | None = None) -> dict:
    return {"type": kind, "label": label or current_label()}


def slot_sets(registry) -> list[str]:
    return list(registry._client().scan_iter(user_key("*")))


@pytest.mark.redis
def test_one_message_to_the_group_closes_every_consumer(harbor_live, token, registry):
    async def body():
        comms = [await attendee(token(uid=f"u{i}")) for i in range(3)]
        await get_channel_layer().group_send(
            label_group(current_label()), to_label(DROP)
        )
        for comm in comms:
            assert await comm.receive_output(timeout=TIMEOUT) == CLOSED_DROPPED

    scenario(body)


@pytest.mark.redis
def test_drop_forgets_the_connections_and_their_slots_at_once(
    harbor_live, token, registry
):
    async def body():
        comms = [await attendee(token(uid=f"u{i}")) for i in range(3)]
        for comm in comms:
            # Frames are handled in order: once this is answered, the slot is taken.
            assert await ask(comm, ["ping", 0]) == ["pong", 0]
        assert registry.counts() == {current_label(): 3}
        assert len(slot_sets(registry)) == 3

        hub = await hub_for(get_channel_layer())
        assert await hub.drop(current_label()) == 3

        # Forgotten by the hub (one pipeline), before the consumers even see the
        # disconnect; they do not unregister a second time.
        assert registry.counts() == {}
        assert slot_sets(registry) == []
        for comm in comms:
            assert await comm.receive_output(timeout=TIMEOUT) == CLOSED_DROPPED
        assert await hub.drop(current_label()) == 0

    scenario(body)


@pytest.mark.redis
def test_reload_to_the_group_tells_every_client_then_closes(
    harbor_live, token, registry, settings
):
    settings.CONNECTIONS_RELOAD_GRACE = 0.1

    async def body():
        comms = [await attendee(token()) for _ in range(3)]
        await get_channel_layer().group_send(
            label_group(current_label()), to_label(RELOAD)
        )
        for comm in comms:
            assert await comm.receive_json_from(timeout=TIMEOUT) == [
                "connection.reload",
                {},
            ]
        for comm in comms:
            assert await comm.receive_output(timeout=TIMEOUT) == CLOSED_DROPPED

    scenario(body)


@pytest.mark.redis
def test_only_the_labels_consumers_are_closed(harbor_live, token, registry, settings):
    settings.STAGEHAND_ENVIRONMENT = "test"

    async def body():
        settings.STAGEHAND_COMMIT = "aaa111"
        old = await attendee(token())
        settings.STAGEHAND_COMMIT = "bbb222"
        new = await attendee(token())
        # One hub for both: the process's consumers are kept per label.
        hub = await hub_for(get_channel_layer())
        assert hub.joined == {"aaa111.test", "bbb222.test"}

        await get_channel_layer().group_send(
            label_group("aaa111.test"), to_label(DROP, "aaa111.test")
        )

        assert await old.receive_output(timeout=TIMEOUT) == CLOSED_DROPPED
        assert await ask(new, ["ping", 1]) == ["pong", 1]
        assert registry.counts() == {"bbb222.test": 1}
        await new.disconnect()

    scenario(body)


@pytest.mark.redis
def test_refresh_renews_a_lost_group_membership(harbor_live, token, registry):
    async def body():
        comm = await attendee(token())
        layer = get_channel_layer()
        hub = await hub_for(layer)
        # As after group_expiry, or a Redis restart: the group forgot the hub.
        await layer.group_discard(label_group(current_label()), hub.channel)

        assert await hub.refresh()

        await layer.group_send(label_group(current_label()), to_label(DROP))
        assert await comm.receive_output(timeout=TIMEOUT) == CLOSED_DROPPED

    scenario(body)


@pytest.mark.redis
def test_the_hub_refreshes_by_itself(harbor_live, token, registry, settings):
    settings.CONNECTIONS_HEARTBEAT_REFRESH = 0.05

    async def body():
        comm = await attendee(token())
        layer = get_channel_layer()
        hub = await hub_for(layer)
        await layer.group_discard(label_group(current_label()), hub.channel)
        # Drops sent while the hub is out of the group reach nobody; once the
        # hub's own refresh has put it back, one reaches it.
        async with asyncio.timeout(TIMEOUT):
            while True:
                await layer.group_send(label_group(current_label()), to_label(DROP))
                if not await comm.receive_nothing(timeout=0.2):
                    break
        assert await comm.receive_output(timeout=TIMEOUT) == CLOSED_DROPPED

    scenario(body)


@pytest.mark.redis
def test_bad_messages_are_logged_and_the_hub_keeps_going(
    harbor_live, token, registry, caplog
):
    async def body():
        comm = await attendee(token())
        layer = get_channel_layer()
        hub = await hub_for(layer)
        for message in (
            {"type": "connections.nonsense", "label": current_label()},
            {"type": DROP},
            {"type": DROP, "label": 5},
        ):
            await layer.send(hub.channel, message)
        assert await ask(comm, ["ping", 1]) == ["pong", 1]

        await layer.group_send(label_group(current_label()), to_label(DROP))
        assert await comm.receive_output(timeout=TIMEOUT) == CLOSED_DROPPED

    with caplog.at_level(logging.WARNING, logger="apps.connections.hub"):
        scenario(body)
    ignored = [r for r in caplog.records if "ignored a message" in r.getMessage()]
    assert len(ignored) == 3


@pytest.mark.redis
def test_a_hub_whose_layer_fails_keeps_trying(caplog):
    # Nothing listens on port 1: every receive fails at once.
    layer = RedisChannelLayer(hosts=["redis://127.0.0.1:1/0"])

    async def body():
        hub = await hub_for(layer)
        async with asyncio.timeout(TIMEOUT):
            while len(failures()) < 3:
                await asyncio.sleep(0.05)
        assert not hub.task.done()
        hub.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hub.task
        assert (asyncio.get_running_loop(), layer) not in _hubs

    def failures() -> list:
        return [r for r in caplog.records if "receiving failed" in r.getMessage()]

    with caplog.at_level(logging.ERROR, logger="apps.connections.hub"):
        scenario(body)


@pytest.mark.redis
def test_a_stopping_hub_leaves_its_group(harbor_live, token, registry):
    async def body():
        layer = get_channel_layer()
        comm = await attendee(token())
        await comm.disconnect()
        hub = await hub_for(layer)
        # What asyncio.run (uvicorn's, or this scenario's) does to pending tasks.
        hub.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hub.task
        assert (asyncio.get_running_loop(), layer) not in _hubs

        await layer.group_send(label_group(current_label()), to_label(DROP))
        assert await read_inbox([hub.channel]) == {hub.channel: []}

    scenario(body)


def test_the_hub_works_on_the_in_memory_layer(in_memory_layer, harbor_live, token):
    get_registry().clear()

    async def body():
        comms = [await attendee(token()) for _ in range(2)]
        assert get_registry().counts() == {current_label(): 2}
        await get_channel_layer().group_send(
            label_group(current_label()), to_label(DROP)
        )
        for comm in comms:
            assert await comm.receive_output(timeout=TIMEOUT) == CLOSED_DROPPED
        # Forgotten by the hub right after the closes.
        async with asyncio.timeout(TIMEOUT):
            while get_registry().counts():
                await asyncio.sleep(0.01)

    scenario(body)


@pytest.mark.redis
def test_consumers_of_an_unknown_world_stay_out_of_the_hub(transactional_db, registry):
    async def body():
        comm = await connect("nosuchworld")
        assert (await comm.receive_json_from(timeout=TIMEOUT))[0] == "error"
        assert (asyncio.get_running_loop(), get_channel_layer()) not in _hubs
        assert registry.counts() == {}

    scenario(body)


def test_a_drop_keeps_the_collector_off_the_objects_it_found(
    in_memory_layer, harbor_live, token, monkeypatch
):
    # At 10,000 sockets, full collections scanning every live object were half of
    # a drop (docs/benchmarks.md): the closes run with the heap frozen.
    frozen_while_closing = []
    close = WorldConsumer.close_from_hub

    async def recording(self):
        frozen_while_closing.append(gc.get_freeze_count())
        await close(self)

    monkeypatch.setattr(WorldConsumer, "close_from_hub", recording)

    async def body():
        comms = [await attendee(token()) for _ in range(2)]
        hub = await hub_for(get_channel_layer())
        assert gc.get_freeze_count() == 0
        assert await hub.drop(current_label()) == 2
        for comm in comms:
            assert await comm.receive_output(timeout=TIMEOUT) == CLOSED_DROPPED

    scenario(body)
    assert len(frozen_while_closing) == 2
    assert all(count > 0 for count in frozen_while_closing)
    assert gc.get_freeze_count() == 0


def test_overlapping_drops_share_one_freeze():
    # (Frozen objects can still be freed by reference counting: the count only
    # tells whether anything is frozen.)
    with collecting_only_new_objects():
        assert gc.get_freeze_count() > 0
        with collecting_only_new_objects():
            assert gc.get_freeze_count() > 0
        assert gc.get_freeze_count() > 0  # the outer drop is still closing
    assert gc.get_freeze_count() == 0


def test_a_freeze_made_by_someone_else_is_left_alone():
    gc.freeze()
    try:
        with collecting_only_new_objects():
            pass
        assert gc.get_freeze_count() > 0  # not unfrozen by the drop
    finally:
        gc.unfreeze()


def test_a_socket_dropped_while_connecting_is_closed_once_open(
    in_memory_layer, harbor_live, monkeypatch
):
    get_registry().clear()
    register = services.register
    registering = asyncio.Event()
    release = asyncio.Event()

    async def slow_register(label: str, channel: str) -> None:
        registering.set()
        await release.wait()
        await register(label, channel)

    monkeypatch.setattr(services, "register", slow_register)

    async def body():
        comm = WebsocketCommunicator(application, "/ws/world/harborconf/")
        connecting = asyncio.ensure_future(comm.connect(timeout=TIMEOUT))
        async with asyncio.timeout(TIMEOUT):
            await registering.wait()  # in its hub, not yet accepted
        hub = await hub_for(get_channel_layer())
        assert await hub.drop(current_label()) == 1
        release.set()
        connected, _ = await connecting
        assert connected
        assert await comm.receive_output(timeout=TIMEOUT) == CLOSED_DROPPED
        # It was counted after the hub forgot it, so it forgets itself when the
        # server tells it the socket is gone (as uvicorn does after the close).
        assert get_registry().counts() == {current_label(): 1}
        await comm.disconnect(code=1001)
        assert get_registry().counts() == {}

    scenario(body)
