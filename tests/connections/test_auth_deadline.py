"""The authentication deadline: a socket that sends no valid token within
CONNECTIONS_AUTH_TIMEOUT is closed with 4008 and frees its pending slot, so idle
sockets cannot make a server answer every real attendee with 1013.

With a real uvicorn process and real WebSocket clients (on PostgreSQL and Redis when
given, else on the embedded defaults with a SQLite file of the server's own), and,
for what a real server cannot be made to do on cue (a slow authentication, a failing
handshake), in this process through WebsocketCommunicator.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from apps.accounts.services import import_terms
from apps.connections import consumers, snapshots
from apps.connections.modules import auth
from apps.connections.protocol import CLOSE_AUTH_TIMEOUT
from apps.worlds.services import TokenError
from tests.conftest import database_url, postgres_available
from tests.helpers import manage
from tests.personas import live_config

from .communicators import TIMEOUT, ask, attendee, connect, scenario
from .server import Server, server_env

WAIT = 20  # seconds a client waits for what must come


@pytest.fixture
def deadline_server(harbor_live, base_env, tmp_path, settings):
    """Start a uvicorn server serving harborconf with more environment: server(**env).

    Tokens made here (``token``) are valid there: the same config, the same secret.
    """
    started: list[Server] = []

    def start(**env: str) -> Server:
        if postgres_available():
            database = {"DATABASE_URL": database_url()}
        else:
            database = {
                "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
                "STAGEHAND_VAR_DIR": str(tmp_path / "var"),
            }
        child = server_env(
            base_env,
            **database,
            REDIS_URL=settings.REDIS_URL,
            STAGEHAND_ENVIRONMENT="test",
            DJANGO_SETTINGS_MODULE="config.settings.test",
            **env,
        )
        if not postgres_available():
            config = tmp_path / "harbor.json"
            config.write_text(json.dumps(live_config()))
            manage(child, "migrate", "--no-input", check=True)
            manage(child, "import_config", str(config), check=True)
        server = Server(child)
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()


async def opened(server: Server):
    return await ws_connect(f"{server.url}/ws/world/harborconf/", open_timeout=WAIT)


async def frame(ws) -> list:
    return json.loads(await asyncio.wait_for(ws.recv(), WAIT))


async def closed_by_deadline(ws) -> None:
    """``ws`` gets auth.timeout, then its close with 4008."""
    action, payload = await frame(ws)
    assert action == "error", payload
    assert payload["code"] == "auth.timeout"
    assert "reconnect and send authenticate" in payload["message"]
    with pytest.raises(ConnectionClosed):
        await frame(ws)
    assert ws.close_code == CLOSE_AUTH_TIMEOUT


async def authenticated(server: Server, token: str):
    ws = await opened(server)
    await ws.send(json.dumps(["authenticate", {"token": token}]))
    reply = await frame(ws)
    assert reply[0] == "authenticated", reply
    return ws


def test_a_socket_that_never_authenticates_is_closed_with_4008(deadline_server):
    server = deadline_server(CONNECTIONS_AUTH_TIMEOUT="1")

    async def body():
        idle, pinging = await opened(server), await opened(server)
        # Pings are answered, but they are no token: its deadline stands.
        await pinging.send(json.dumps(["ping", 1]))
        assert await frame(pinging) == ["pong", 1]
        # Neither is a token that fails.
        wrong = await opened(server)
        await wrong.send(json.dumps(["authenticate", {"token": "not.a.token"}]))
        assert (await frame(wrong))[1]["code"] == "auth.invalid_token"
        for ws in (idle, pinging, wrong):
            await closed_by_deadline(ws)

    asyncio.run(body())


def test_idle_sockets_holding_every_pending_slot_give_way_at_their_deadline(
    deadline_server, token
):
    # A slowloris: as many idle sockets as the process takes pending handshakes.
    server = deadline_server(CONNECTIONS_MAX_PENDING="5", CONNECTIONS_AUTH_TIMEOUT="2")

    async def body():
        idle = [await opened(server) for _ in range(5)]
        # They hold every slot: a real attendee is told to come back later...
        refused = await opened(server)
        action, payload = await frame(refused)
        assert (action, payload["code"]) == ("error", "server.busy")
        with pytest.raises(ConnectionClosed):
            await frame(refused)
        assert refused.close_code == 1013
        # ...until their deadline frees the slots.
        for ws in idle:
            await closed_by_deadline(ws)
        attendees = [await authenticated(server, token(uid=f"a{i}")) for i in range(5)]
        # Authenticated, they hold no slot: more still get in.
        attendees.append(await authenticated(server, token(uid="late")))
        for ws in attendees:
            await ws.close()

    asyncio.run(body())


def test_authenticated_sockets_are_never_closed_by_the_deadline(deadline_server, token):
    server = deadline_server(CONNECTIONS_AUTH_TIMEOUT="0.5")

    async def body():
        clients = [await authenticated(server, token(uid=f"u{i}")) for i in range(3)]
        idle = await opened(server)
        await closed_by_deadline(idle)  # the deadline is at work...
        await asyncio.sleep(1.5)  # ...and well past the attendees' own
        for n, ws in enumerate(clients):
            await ws.send(json.dumps(["ping", n]))
            assert await frame(ws) == ["pong", n]
            await ws.close()

    asyncio.run(body())


def test_a_deadline_of_0_closes_nothing(deadline_server):
    server = deadline_server(CONNECTIONS_AUTH_TIMEOUT="0")

    async def body():
        ws = await opened(server)
        await asyncio.sleep(1.5)
        await ws.send(json.dumps(["ping", "still"]))
        assert await frame(ws) == ["pong", "still"]
        await ws.close()

    asyncio.run(body())


# In this process: the timing of the server's own work, and its failures ----------


def slow(function, seconds: float):
    async def late(*args, **kwargs):
        await asyncio.sleep(seconds)
        return await function(*args, **kwargs)

    return late


def test_an_authentication_still_running_at_the_deadline_is_not_cut_off(
    harbor_live, token, settings, monkeypatch
):
    # The client sent its token in time; the server is slow (a rush on its database).
    settings.CONNECTIONS_AUTH_TIMEOUT = 0.2
    monkeypatch.setattr(auth, "load_attendee", slow(auth.load_attendee, 0.6))

    async def body():
        before = consumers._pending
        comm = await attendee(token())
        await asyncio.sleep(0.4)
        assert await ask(comm, ["ping", 1]) == ["pong", 1]
        await comm.disconnect()
        assert consumers._pending == before

    scenario(body)


def test_one_that_fails_after_its_deadline_passed_is_closed_then(
    harbor_live, settings, monkeypatch
):
    settings.CONNECTIONS_AUTH_TIMEOUT = 0.2

    async def refuse(*args, **kwargs):
        await asyncio.sleep(0.5)
        raise TokenError("auth.invalid_token", "No.")

    monkeypatch.setattr(auth, "load_attendee", refuse)

    async def body():
        before = consumers._pending
        comm = await connect()
        await comm.send_json_to(["authenticate", {"token": "x"}])
        # Its own answer first, then the deadline's.
        reply = await comm.receive_json_from(timeout=TIMEOUT)
        assert reply[1]["code"] == "auth.invalid_token"
        reply = await comm.receive_json_from(timeout=TIMEOUT)
        assert reply[1]["code"] == "auth.timeout"
        closed = await comm.receive_output(timeout=TIMEOUT)
        assert closed == {"type": "websocket.close", "code": CLOSE_AUTH_TIMEOUT}
        assert consumers._pending == before
        await comm.disconnect()

    monkeypatch.setattr(auth, "verify_token", lambda world, token: {})
    scenario(body)


def test_a_person_reading_the_terms_has_no_deadline(harbor_live, token, settings):
    settings.CONNECTIONS_AUTH_TIMEOUT = 0.2
    terms = import_terms("tos", "1", "# Terms\n\nBe kind.")

    async def body():
        before = consumers._pending
        comm = await connect()
        reply = await ask(comm, ["authenticate", {"token": token()}])
        assert reply[0] == "auth.terms_required"
        assert consumers._pending == before  # identified: no pending handshake
        await asyncio.sleep(0.5)
        reply = await ask(comm, ["auth.accept_terms", {"terms": [terms.pk]}])
        assert reply[0] == "authenticated"
        await comm.disconnect()

    scenario(body)


async def failing(*args, **kwargs):
    raise RuntimeError("snapshot store away")


@pytest.mark.parametrize("how", ["disconnects", "fails to open", "unknown world"])
def test_every_way_out_frees_the_pending_slot(harbor_live, settings, monkeypatch, how):
    settings.CONNECTIONS_AUTH_TIMEOUT = 0  # only the exits themselves

    async def body():
        before = consumers._pending
        settings.CONNECTIONS_MAX_PENDING = before + 1
        if how == "fails to open":
            with monkeypatch.context() as patch:
                patch.setattr(snapshots.Snapshots, "world", failing)
                comm = await connect()
                reply = await comm.receive_json_from(timeout=TIMEOUT)
                assert reply[1]["code"] == "server.error"
                closed = await comm.receive_output(timeout=TIMEOUT)
                assert closed["code"] == 1011
        elif how == "unknown world":
            comm = await connect("nosuchworld")
            assert (await comm.receive_json_from(timeout=TIMEOUT))[1]["code"] == (
                "world.unknown_world"
            )
        else:
            comm = await connect()
            assert consumers._pending == before + 1
        await comm.disconnect()
        assert consumers._pending == before
        # And the one slot is free for the next: not answered with 1013.
        comm = await connect()
        assert await ask(comm, ["ping", 1]) == ["pong", 1]
        await comm.disconnect()

    scenario(body)
