"""Cross-process, for real: uvicorn server processes, real WebSocket clients, and the
connections command in this process reaching them through Redis."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, connections
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from apps.accounts.services import import_terms
from apps.connections.registry import user_key
from apps.connections.services import process_of
from apps.jobs.models import JobRun
from apps.worlds.services import generate_token, import_config
from tests.conftest import database_url
from tests.helpers import call

from .server import Server, server_env

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

WINDOW = 3.0  # seconds; short, so a killed server's connections age out quickly
TIMEOUT = 20


async def in_thread(*args: str) -> str:
    # call_command runs its own event loop (async_to_sync): not on this one.
    return await asyncio.to_thread(call, "connections", *args)


async def counts() -> dict[str, int]:
    data = json.loads(await in_thread("list", "--json"))
    return {item["label"]: item["connections"] for item in data}


@pytest.fixture
def servers(harbor_live, registry, base_env, settings):
    """Start servers by commit: servers("aaa111", "bbb222"); all stopped at the end.

    Keyword arguments are more environment for them, e.g. a CELERY_BROKER_URL, or
    replace these defaults (a CONNECTIONS_HEARTBEAT_WINDOW, also set here then).
    """
    settings.CONNECTIONS_HEARTBEAT_WINDOW = WINDOW
    started: list[Server] = []

    def start(*commits: str, extra_args: tuple = (), **env: str) -> list[Server]:
        if "CONNECTIONS_HEARTBEAT_WINDOW" in env:
            settings.CONNECTIONS_HEARTBEAT_WINDOW = float(
                env["CONNECTIONS_HEARTBEAT_WINDOW"]
            )
        defaults = {
            "DATABASE_URL": database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "STAGEHAND_ENVIRONMENT": "test",
            "CONNECTIONS_HEARTBEAT_WINDOW": str(WINDOW),
            "CONNECTIONS_HEARTBEAT_REFRESH": "0.2",
            "CONNECTIONS_RELOAD_GRACE": "0.2",
        }
        batch = [
            Server(
                server_env(base_env, **{**defaults, "STAGEHAND_COMMIT": commit, **env}),
                extra_args=extra_args,
            )
            for commit in commits
        ]
        started.extend(batch)
        for server in batch:
            server.wait_ready()
        return batch

    yield start
    for server in started:
        server.stop()


async def attendee(server: Server, token: str):
    ws = await connect(f"{server.url}/ws/world/harborconf/", open_timeout=TIMEOUT)
    await ws.send(json.dumps(["authenticate", {"token": token}]))
    reply = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    assert reply[0] == "authenticated", reply
    return ws


async def attendees(server: Server, tokens: list[str], at_once: int = 1) -> list:
    clients = []
    for start in range(0, len(tokens), at_once):
        clients += await asyncio.gather(
            *(attendee(server, t) for t in tokens[start : start + at_once])
        )
    return clients


async def next_frame(ws) -> list:
    return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))


async def still_quiet(ws) -> bool:
    """True if nothing but our own pong is waiting on ``ws``."""
    await ws.send(json.dumps(["ping", "quiet?"]))
    return await next_frame(ws) == ["pong", "quiet?"]


async def reloaded_and_closed(clients: list, *, untouched: list) -> None:
    """Each of ``clients`` got the reload frame, then its close; ``untouched`` nothing."""
    for ws in clients:
        assert await next_frame(ws) == ["connection.reload", {}]
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
        assert ws.close_code == 1001
    for ws in untouched:
        assert await still_quiet(ws)


def test_list_force_reload_and_drop_across_two_servers(servers, token):
    old, new = servers("aaa111", "bbb222")

    async def body():
        old_clients = await attendees(old, [token() for _ in range(3)])
        new_clients = await attendees(new, [token() for _ in range(2)])

        assert await counts() == {"aaa111.test": 3, "bbb222.test": 2}
        listing = (await in_thread("list")).splitlines()
        assert [line.split() for line in listing[1:3]] == [
            ["aaa111.test", "3"],
            ["bbb222.test", "2"],
        ]

        out = await in_thread("force_reload", "--interval", "10", "aaa111.*")
        assert out.splitlines()[-1] == "Reloaded 3 connections (labels: aaa111.test)"
        await reloaded_and_closed(old_clients, untouched=new_clients)
        assert await counts() == {"bbb222.test": 2}

        out = await in_thread("drop")
        assert out.splitlines()[-1] == "Dropped 2 connections (labels: bbb222.test)"
        for ws in new_clients:
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
            assert ws.close_code == 1001
        assert await counts() == {}

    asyncio.run(body())


def test_a_killed_servers_connections_age_out(servers, token):
    doomed, survivor = servers("aaa111", "bbb222")

    async def body():
        doomed_clients = await attendees(doomed, [token() for _ in range(2)])
        survivors = await attendees(survivor, [token() for _ in range(2)])
        assert await counts() == {"aaa111.test": 2, "bbb222.test": 2}

        doomed.kill()
        for ws in doomed_clients:
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT)

        # The survivors keep pinging (as browsers do every 10 s, here faster) while
        # the killed server's registrations grow older than the window.
        deadline = time.monotonic() + WINDOW * 5
        seen = await counts()
        while "aaa111.test" in seen and time.monotonic() < deadline:
            for ws in survivors:
                assert await still_quiet(ws)
            await asyncio.sleep(0.3)
            seen = await counts()
        assert seen == {"bbb222.test": 2}

        for ws in survivors:
            await ws.close()

    asyncio.run(body())


def test_hostile_and_crashed_clients_leave_the_count_at_once(servers, token):
    # Frames that used to kill their connection (RecursionError, UnicodeEncodeError)
    # are answered; sockets that vanish without a close frame are uncounted at once,
    # not after the heartbeat window (a minute here, so aging out cannot pass).
    (server,) = servers("aaa111", CONNECTIONS_HEARTBEAT_WINDOW="60")

    async def body():
        clients = await attendees(server, [token() for _ in range(10)])
        assert await counts() == {"aaa111.test": 10}
        hostile = [
            "[" * 60_000,
            json.dumps(["chat.send", 1, {"room": "hallway", "text": "\ud800"}]),
            '["authenticate", {"token": "\\ud800"}]',
            '["ping", Infinity]',
            json.dumps(["room.enter", 2, {"room": "\x00"}]),
        ]
        for ws in clients:
            for text in hostile:
                await ws.send(text)
                reply = await next_frame(ws)
                assert reply[0] == "error", (text[:40], reply)
                assert reply[-1]["code"] != "server.error", reply
            assert await still_quiet(ws)
        assert await counts() == {"aaa111.test": 10}

        for ws in clients[:6]:
            ws.transport.abort()  # the TCP connection drops: no close frame
        await clients[6].close()
        deadline = time.monotonic() + 5
        while (seen := await counts()) != {"aaa111.test": 3}:
            assert time.monotonic() < deadline, seen
            await asyncio.sleep(0.1)
        for ws in clients[7:]:
            assert await still_quiet(ws)
            await ws.close()
        assert "Traceback" not in server.output()

    asyncio.run(body())


@pytest.mark.parametrize(
    ("path", "origin", "status"),
    [
        ("/ws/world/%00/", None, None),  # accepted, told, closed 4004
        ("/ws/world/harbor%00conf/", None, None),
        ("/ws/world/%00/", "https://harbor.example.org", 403),
        ("/ws/world/harborconf/", "http://[::1", 403),
        ("/ws/world/harborconf/", "http://[::1]:8000", 403),
    ],
)
def test_hostile_handshakes_are_refused_not_failed(servers, path, origin, status):
    (server,) = servers("aaa111")

    async def body():
        headers = {"Origin": origin} if origin else None
        if status is not None:
            with pytest.raises(InvalidStatus) as info:
                await connect(
                    f"{server.url}{path}",
                    additional_headers=headers,
                    open_timeout=TIMEOUT,
                )
            assert info.value.response.status_code == status
            return
        ws = await connect(f"{server.url}{path}", open_timeout=TIMEOUT)
        reply = await next_frame(ws)
        assert reply[1]["code"] == "world.unknown_world"
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
        assert ws.close_code == 4004

    asyncio.run(body())
    assert "Traceback" not in server.output()


def test_drop_without_interval_closes_only_that_labels_clients(servers, token):
    old, new = servers("aaa111", "bbb222")

    async def body():
        old_clients = await attendees(old, [token() for _ in range(3)])
        new_clients = await attendees(new, [token() for _ in range(2)])

        # One message to aaa111's group: the one process serving it closes its own.
        out = await in_thread("drop", "aaa111.*")
        assert out.splitlines()[-1] == "Dropped 3 connections (labels: aaa111.test)"
        for ws in old_clients:
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
            assert ws.close_code == 1001
        for ws in new_clients:
            assert await still_quiet(ws)
        assert await counts() == {"bbb222.test": 2}

        for ws in new_clients:
            await ws.close()

    asyncio.run(body())


def test_force_reload_without_interval_tells_every_client_then_closes(servers, token):
    old, new = servers("aaa111", "bbb222")

    async def body():
        old_clients = await attendees(old, [token() for _ in range(4)])
        new_clients = await attendees(new, [token() for _ in range(2)])

        out = await in_thread("force_reload", "aaa111.*")
        assert out.splitlines()[-1] == "Reloaded 4 connections (labels: aaa111.test)"
        for ws in old_clients:
            assert await next_frame(ws) == ["connection.reload", {}]
        for ws in old_clients:
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
            assert ws.close_code == 1001
        for ws in new_clients:
            assert await still_quiet(ws)

        for ws in new_clients:
            await ws.close()

    asyncio.run(body())


def test_a_drop_of_many_clients_of_one_process(servers, token, registry):
    (server,) = servers("aaa111")
    many = 300

    def slot_sets() -> list[str]:
        return list(registry._client().scan_iter(user_key("*")))

    async def body():
        clients = await attendees(server, [token() for _ in range(many)], at_once=50)
        for ws in clients:
            # Answered in order after authenticate: every slot is taken by now.
            assert await still_quiet(ws)
        assert await counts() == {"aaa111.test": many}
        assert len(slot_sets()) == many

        out = await in_thread("drop")
        assert out.splitlines()[-1] == (
            f"Dropped {many} connections (labels: aaa111.test)"
        )
        for ws in clients:
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
            assert ws.close_code == 1001
        assert await counts() == {}
        # The attendees' connection_limit slots are released too (the server does
        # that, in one pipeline for the whole drop).
        deadline = time.monotonic() + TIMEOUT
        while slot_sets() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert slot_sets() == []

        # The process still serves: new clients connect and can be dropped again.
        again = await attendees(server, [token() for _ in range(2)])
        out = await in_thread("drop")
        assert out.splitlines()[-1] == "Dropped 2 connections (labels: aaa111.test)"
        for ws in again:
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
            assert ws.close_code == 1001

    asyncio.run(body())


def post_api(server: Server, path: str, key: str, body: dict) -> tuple[int, dict]:
    """POST ``body`` to the API of a real server process; its status and answer."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/api/v1/{path}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Token {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        return response.status, json.loads(response.read())


def test_a_paced_reload_from_the_api_runs_on_a_worker(
    servers, token, alice, celery_worker, settings
):
    # What an operator does when a paced reload of thousands would outlast any HTTP
    # request: the API (of a real server process, on the Redis broker) answers 202
    # at once, and a real worker paces the clients.
    old, new = servers("aaa111", "bbb222", CELERY_BROKER_URL=settings.REDIS_URL)
    key = Token.objects.create(user=alice).key

    def finished(run_id: int) -> JobRun | None:
        try:
            return JobRun.objects.filter(
                pk=run_id, outcome__in=["success", "failure"]
            ).first()
        finally:
            connection.close()  # this thread's: it would outlive the test database

    async def body():
        old_clients = await attendees(old, [token() for _ in range(3)])
        new_clients = await attendees(new, [token()])

        status, run = await asyncio.to_thread(
            post_api,
            new,
            "connections/force_reload/",
            key,
            {"labels": ["aaa111.*"], "interval_ms": 20, "delay": True},
        )
        assert status == 202, run
        assert (run["job"], run["trigger"], run["outcome"]) == (
            "connections-reload",
            "api",
            "queued",
        )
        assert run["label"] == 'connections-reload("aaa111.*", interval_ms=20)'

        await reloaded_and_closed(old_clients, untouched=new_clients)

        deadline = time.monotonic() + TIMEOUT
        while not (done := await asyncio.to_thread(finished, run["id"])):
            assert time.monotonic() < deadline, "the worker never finished the run"
            await asyncio.sleep(0.2)
        assert done.outcome == "success", done.error
        assert done.result == "Reloaded 3 connections (labels: aaa111.test)"
        assert await counts() == {"bbb222.test": 1}
        for ws in new_clients:
            await ws.close()

    asyncio.run(body())


def test_a_spread_drop_from_the_api_keeps_its_spread_on_the_worker(
    servers, token, alice, celery_worker, settings
):
    # The API's delay hands the request's spread_ms to the job: the worker's drop
    # tells each client of the real server when to come back, within the window.
    (server,) = servers("aaa111", CELERY_BROKER_URL=settings.REDIS_URL)
    key = Token.objects.create(user=alice).key

    async def body():
        clients = await attendees(server, [token() for _ in range(8)])

        status, run = await asyncio.to_thread(
            post_api,
            server,
            "connections/drop/",
            key,
            {"labels": ["aaa111.*"], "spread_ms": 30_000, "delay": True},
        )
        assert status == 202, run
        assert run["kwargs"] == {"interval_ms": 0, "spread_ms": 30_000}
        assert run["label"] == (
            'connections-drop("aaa111.*", interval_ms=0, spread_ms=30000)'
        )

        hints = []
        for ws in clients:
            action, payload = await next_frame(ws)
            assert action == "connection.drop"
            hints.append(payload["reconnect_after_ms"])
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
            assert ws.close_code == 1001
        assert all(0 <= hint <= 30_000 for hint in hints)
        assert len(set(hints)) > 1

    asyncio.run(body())


async def with_database(function, *args):
    """Run ``function`` in a thread of its own, closing its database connection."""

    def run():
        try:
            return function(*args)
        finally:
            connections.close_all()

    return await asyncio.to_thread(run)


async def authenticate_until(server: Server, token: str, expected: str) -> float:
    """Connect with ``token`` until the first reply is ``expected``; return how long
    it took (a fresh connection each time, as after a change a browser reconnects)."""
    started = time.monotonic()
    while True:
        async with connect(
            f"{server.url}/ws/world/harborconf/", open_timeout=TIMEOUT
        ) as ws:
            await ws.send(json.dumps(["authenticate", {"token": token}]))
            reply = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        if reply[0] == expected or (
            reply[0] == "error" and reply[1]["code"] == expected
        ):
            return time.monotonic() - started
        assert time.monotonic() - started < TIMEOUT, reply
        await asyncio.sleep(0.1)


def test_a_changed_secret_and_new_terms_reach_a_server_that_had_them_cached(
    servers, token, harbor_live_config
):
    # The server keeps the world and the terms in memory (snapshots.py) and reads
    # them again only when told they changed: here, by this process's import_config
    # and import_terms. Well before CONNECTIONS_SNAPSHOT_MAX_AGE (60 s).
    (server,) = servers("aaa111")
    old_token = token(uid="ada")

    async def body():
        # Cached: the world with its old secrets, and no terms.
        await (await attendee(server, old_token)).close()
        harbor_live_config["world"]["JWT_secrets"] = [
            {"issuer": "any", "audience": "stagehand", "secret": "r" * 64}
        ]
        world = (await with_database(import_config, harbor_live_config)).world
        new_token = await asyncio.to_thread(generate_token, world, [], 1, "grace")

        assert await authenticate_until(server, new_token, "authenticated") < 5
        assert await authenticate_until(server, old_token, "auth.invalid_token") < 1

        await with_database(import_terms, "tos", "1", "# Terms\n\nBe kind.")
        assert await authenticate_until(server, new_token, "auth.terms_required") < 5

    asyncio.run(body())


@pytest.mark.parametrize("via", ["command, paced", "api, unpaced"])
def test_a_drop_counts_a_killed_servers_connections_unreachable(
    servers, token, alice, via
):
    # Nothing here waits for counts to age out (the drop forgets the killed server's),
    # and these clients never ping, so a window well above the test's length: with
    # the default 3 s, a slow test process saw the survivors age out mid-test.
    doomed, survivor = servers("aaa111", "bbb222", CONNECTIONS_HEARTBEAT_WINDOW="15")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=alice).key}")

    def drop_by_api(labels: list[str], interval_ms: int) -> dict:
        response = api.post(
            "/api/v1/connections/drop/",
            {"labels": labels, "interval_ms": interval_ms},
            format="json",
        )
        assert response.status_code == 200, response.content
        return response.json()

    async def body():
        doomed_clients = await attendees(doomed, [token() for _ in range(10)], 5)
        survivors = await attendees(survivor, [token() for _ in range(2)])
        doomed.kill()  # SIGKILL: its hub never answers again
        for ws in doomed_clients:
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
        assert await counts() == {"aaa111.test": 10, "bbb222.test": 2}

        if via == "command, paced":
            out, err = StringIO(), StringIO()
            await asyncio.to_thread(
                call_command, "connections", "drop", "--interval-ms", "10",
                "aaa111.*", stdout=out, stderr=err,
            )  # fmt: skip
            # Off a terminal the bar is one summary line, above the result.
            last = out.getvalue().splitlines()[-1]
            assert last == "Dropped 0 connections (labels: aaa111.test)"
            assert err.getvalue().startswith("10 connections could not be reached")
        else:
            assert await with_database(drop_by_api, ["aaa111.*"], 0) == {
                "count": 0,
                "labels": ["aaa111.test"],
                "unreachable": 10,
                "dry_run": False,
            }
        # Their registry entries are gone: counted no more, and no second drop.
        assert await counts() == {"bbb222.test": 2}
        # The living server's connections are reached as before.
        assert await with_database(drop_by_api, ["*"], 10) == {
            "count": 2,
            "labels": ["bbb222.test"],
            "unreachable": 0,
            "dry_run": False,
        }
        for ws in survivors:
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT)

    asyncio.run(body())


def test_several_worker_processes_on_one_redis_are_listed_and_moved_exactly(
    servers, token, registry
):
    # As production runs them: WEB_CONCURRENCY uvicorn workers on one socket.
    (server,) = servers("aaa111", extra_args=("--workers", "2"))

    async def body():
        clients = await attendees(server, [token() for _ in range(30)], 10)
        members = registry.members("aaa111.test")
        assert len(members) == 30
        # The kernel handed connections to both processes, each with its hub.
        assert len({process_of(c) for c in members}) == 2
        assert len(registry.processes()) == 2
        assert await counts() == {"aaa111.test": 30}

        reloaded = await in_thread("force_reload", "aaa111.*")
        last = reloaded.splitlines()[-1]
        assert last == "Reloaded 30 connections (labels: aaa111.test)"
        await reloaded_and_closed(clients, untouched=[])
        assert await counts() == {}

        clients = await attendees(server, [token() for _ in range(30)], 10)
        dropped = await in_thread("drop", "--interval-ms", "1")
        assert (
            dropped.splitlines()[-1] == "Dropped 30 connections (labels: aaa111.test)"
        )
        for ws in clients:
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
            assert ws.close_code == 1001
        assert await counts() == {}

    asyncio.run(body())
