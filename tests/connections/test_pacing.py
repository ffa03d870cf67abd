"""Telling dropped and reloaded clients when to come back, and refusing handshakes
a busy process cannot take (close code 1013)."""

from __future__ import annotations

from io import StringIO

import pytest
from channels.layers import get_channel_layer
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.connections.hub import hub_for
from apps.connections.services import current_label, default_spread_ms

from .communicators import TIMEOUT, ask, attendee, connect, scenario
from .helpers import inbox, open_channels


def test_the_default_spread_is_sized_from_the_count(settings):
    settings.CONNECTIONS_RECONNECT_RATE = 1000
    assert default_spread_ms(10_000) == 10_000
    assert default_spread_ms(2_500) == 2_500
    # Under a second's worth: no spread, the clients come back at once.
    assert default_spread_ms(999) == 0


def test_a_spread_drop_tells_each_client_when_to_come_back(harbor_live, token):
    async def body():
        comms = [await attendee(token(uid=f"u{i}")) for i in range(5)]
        hub = await hub_for(get_channel_layer())
        hub.handle(
            {"type": "connections.drop", "label": current_label(), "spread_ms": 30_000}
        )
        hints = []
        for comm in comms:
            action, payload = await comm.receive_json_from(timeout=TIMEOUT)
            assert action == "connection.drop"
            hints.append(payload["reconnect_after_ms"])
            closed = await comm.receive_output(timeout=TIMEOUT)
            assert closed == {"type": "websocket.close", "code": 1001}
        assert all(0 <= hint <= 30_000 for hint in hints)
        assert len(set(hints)) > 1  # jittered, not one moment for all

    scenario(body)


def test_a_spread_reload_carries_the_hint_in_its_frame(harbor_live, token, settings):
    settings.CONNECTIONS_RELOAD_GRACE = 0.1

    async def body():
        comm = await attendee(token())
        hub = await hub_for(get_channel_layer())
        hub.handle(
            {"type": "connections.reload", "label": current_label(), "spread_ms": 5000}
        )
        action, payload = await comm.receive_json_from(timeout=TIMEOUT)
        assert action == "connection.reload"
        assert 0 <= payload["reconnect_after_ms"] <= 5000
        closed = await comm.receive_output(timeout=TIMEOUT)
        assert closed == {"type": "websocket.close", "code": 1001}

    scenario(body)


@pytest.mark.redis
@pytest.mark.parametrize(
    ("spread", "spread_ms"),
    [("30s", 30_000), ("500ms", 500), ("2m", 120_000), ("0", 0)],
)
def test_spread_goes_to_every_process_of_the_label(
    registry, processes, spread, spread_ms
):
    open_channels(registry, {"abc123.production": 3})
    process = processes.join("abc123.production")

    call_command("connections", "drop", "--spread", spread, stdout=StringIO())

    message = {"type": "connections.drop", "label": "abc123.production"}
    if spread_ms:
        message["spread_ms"] = spread_ms
    assert inbox([process])[process] == [message]


@pytest.mark.redis
def test_a_paced_drop_with_a_spread_gives_each_its_own_hint(registry):
    opened = open_channels(registry, {"abc123.production": 4})["abc123.production"]

    call_command(
        "connections",
        "drop",
        "--interval-ms",
        "1",
        "--spread",
        "10s",
        stdout=StringIO(),
    )

    got = inbox(opened)
    hints = [messages[0]["reconnect_after_ms"] for messages in got.values()]
    assert all(0 <= hint <= 10_000 for hint in hints)


@pytest.mark.parametrize("value", ["soon", "-1s", "2h", "61m"])
def test_a_bad_spread_is_refused(value):
    with pytest.raises(CommandError, match="--spread"):
        call_command("connections", "drop", "--spread", value, stdout=StringIO())


def test_an_overloaded_process_answers_1013_with_a_hint(harbor_live, token, settings):
    settings.CONNECTIONS_MAX_PENDING = 2

    async def body():
        waiting = [await connect(), await connect()]  # not authenticated yet
        busy = await connect()
        action, payload = await busy.receive_json_from(timeout=TIMEOUT)
        assert action == "error" and payload["code"] == "server.busy"
        assert payload["reconnect_after_ms"] >= 500
        closed = await busy.receive_output(timeout=TIMEOUT)
        assert closed == {"type": "websocket.close", "code": 1013}
        # Once one of them has authenticated, there is room again.
        reply = await ask(waiting[0], ["authenticate", {"token": token()}])
        assert reply[0] == "authenticated"
        welcome = await attendee(token(uid="later"))
        for comm in [*waiting, welcome]:
            await comm.disconnect()

    scenario(body)
