"""local.yml on a real engine: the development stack comes up and `make run`'s smoke passes.

django (uvicorn with reload), postgres, redis, celeryworker, celerybeat, flower and an
S3-compatible store (moto), with the committed values of .envs/.local/.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator

import pytest
from websockets.sync.client import connect

from e2e.stack import Stack, copy_checkout

SERVICES = ["postgres", "redis", "s3", "django", "celeryworker", "celerybeat", "flower"]


@pytest.fixture(scope="module")
def local(workdir) -> Iterator[Stack]:
    stack = Stack(
        directory=copy_checkout(workdir / "local"),
        file="local.yml",
        project=f"stagehand_e2e_local_{os.getpid()}",
        env={
            "DJANGO_PUBLISH": "127.0.0.1:",
            "FLOWER_PUBLISH": "127.0.0.1:",
            "S3_PUBLISH": "127.0.0.1:",
        },
    )
    try:
        yield stack
    finally:
        stack.compose("down", "-v", "--remove-orphans", "--timeout", "20", check=False)


def test_local_yml_comes_up_and_serves(local: Stack):
    local.compose("up", "-d", "--build", timeout=2400)
    local.wait_healthy(SERVICES, 400)
    port = local.compose("port", "django", "8000").stdout.strip().rsplit(":", 1)[1]
    base = f"http://127.0.0.1:{port}"
    with urllib.request.urlopen(f"{base}/readyz", timeout=30) as response:
        assert response.status == 200
    with urllib.request.urlopen(f"{base}/admin/login/", timeout=30) as response:
        assert b"csrfmiddlewaretoken" in response.read()
    logs = local.compose("logs", "--no-color", "django").stdout
    assert "reloader" in logs.lower(), logs[-2000:]

    info = local.manage("info")
    assert "FAIL" not in info.stdout and "unavailable" not in info.stdout, info.stdout
    local.manage(
        "create_world",
        "--noinput",
        "--id",
        "local",
        "--title",
        "Local",
        "--domain",
        "localhost",
    )
    token = local.manage("generate_token", "local", "--raw").stdout.strip()
    with connect(f"ws://127.0.0.1:{port}/ws/world/local/", open_timeout=30) as ws:
        ws.send(json.dumps(["authenticate", {"token": token}]))
        assert json.loads(ws.recv(timeout=30))[0] == "authenticated"
    local.manage("backup")
    assert local.manage_json("backups")
