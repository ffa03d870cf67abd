"""A Redis password given as ``?password=`` in REDIS_URL (as redis-py allows) appears
nowhere: not in ``info``, ``stats`` (either form), /readyz, /api/v1/stats/, the admin's
operations page, or a server's log. Anonymous /readyz shows no detail at all.

The URL points at the real Redis: redis-py sends the password, and a server without
``requirepass`` accepts it, so every component answers and shows its (masked) URL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import urllib.request
import uuid

import pytest
from django.conf import settings
from websockets.asyncio.client import connect

from tests.connections.server import Server, server_env
from tests.helpers import free_port, manage, port_open, wait_for

pytestmark = pytest.mark.redis

MASKED = "password=***"


@pytest.fixture
def password() -> str:
    return f"pw-{uuid.uuid4().hex}"


@pytest.fixture
def secret_url(password) -> str:
    """The suite's Redis, with the password as a query parameter."""
    base = settings.REDIS_URL
    return f"{base}{'&' if '?' in base else '?'}password={password}"


@pytest.fixture
def with_secret_redis(settings, secret_url):
    """This process's cache and channel layer on ``secret_url``."""
    settings.REDIS_URL = secret_url
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": secret_url,
            "KEY_PREFIX": "stagehand-secrets-test",
        }
    }
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": secret_url}], "prefix": "secrets-test"},
        }
    }
    return secret_url


def output_of(env: dict, *args: str) -> str:
    """What `manage.py ARGS` printed in a child, on both streams."""
    done = manage(env, *args)
    return done.stdout + done.stderr


@pytest.mark.parametrize(
    "args", [("info",), ("info", "--json"), ("stats",), ("stats", "--json")]
)
def test_commands_mask_the_password(child_env, secret_url, password, args):
    output = output_of({**child_env, "REDIS_URL": secret_url}, *args)
    assert password not in output
    # The URL is shown, masked: the cache and the channel layer answered on it.
    assert MASKED in output, output
    if args == ("info", "--json"):
        rows = {c["name"]: c for c in json.loads(output)["components"]}
        assert rows["cache"]["status"] == rows["channel layer"]["status"] == "ok"


def test_anonymous_readyz_shows_status_only(db, client, with_secret_redis, password):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert all(set(c) == {"status"} for c in body["components"].values()), body
    assert password not in response.content.decode()
    assert "redis://" not in response.content.decode()


def test_staff_see_the_detail_masked(client, alice, with_secret_redis, password):
    client.force_login(alice)
    response = client.get("/readyz")
    text = response.content.decode()
    assert response.json()["components"]["cache"]["detail"].endswith(MASKED)
    assert password not in text


def test_the_stats_api_masks_the_password(client, alice, with_secret_redis, password):
    client.force_login(alice)
    response = client.get("/api/v1/stats/")
    assert response.status_code == 200
    assert MASKED in response.content.decode()
    assert password not in response.content.decode()


def test_the_operations_page_masks_the_password(
    client, alice, with_secret_redis, password, var_dir
):
    client.force_login(alice)
    response = client.get("/admin/operations/")
    assert response.status_code == 200
    page = response.content.decode()
    assert MASKED in page
    assert password not in page


def test_no_log_line_of_this_process_has_the_password(
    client, alice, with_secret_redis, password, var_dir, caplog
):
    caplog.set_level(logging.DEBUG)
    client.get("/readyz")
    client.force_login(alice)
    client.get("/readyz")
    client.get("/admin/operations/")
    assert caplog.records  # the level reached the loggers
    assert password not in caplog.text


@pytest.fixture
def private_redis(password):
    """A redis-server of this test's own that requires ``password``; killed after."""
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            password,
        ],
        stdout=subprocess.DEVNULL,
    )
    wait_for(lambda: port_open(f"redis://127.0.0.1:{port}", port), "redis-server")
    yield port, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def test_a_server_logs_nothing_of_the_password(child_env, password, private_redis):
    port, redis_proc = private_redis
    url = f"redis://127.0.0.1:{port}/0?password={password}"
    env = server_env(child_env, REDIS_URL=url)
    output_of(env, "migrate", "-v0")
    output_of(
        env,
        "create_world",
        "--noinput",
        "--id",
        "logs",
        "--title",
        "Logs",
        "--domain",
        "logs.example.org",
    )
    token = output_of(env, "generate_token", "logs", "--raw").strip()
    server = Server(env)
    try:
        server.wait_ready()
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/readyz") as r:
            body = r.read().decode()
        assert password not in body and "redis://" not in body
        # An attendee in: the consumer registers in Redis (the password is needed
        # for that) and joins its groups.
        assert asyncio.run(authenticate(server, token))[0] == "authenticated"
        # Redis goes away: the server logs what its connections run into.
        redis_proc.kill()
        output = wait_for(
            lambda: str(port) in server.output() and server.output(),
            "a log line about the lost Redis",
        )
    finally:
        server.stop()
    assert password not in output


async def authenticate(server: Server, token: str) -> list:
    async with connect(f"{server.url}/ws/world/logs/", open_timeout=20) as ws:
        await ws.send(json.dumps(["authenticate", {"token": token}]))
        return json.loads(await asyncio.wait_for(ws.recv(), 20))
