"""Helpers for the ops tests that drive real processes."""

from __future__ import annotations

import asyncio
import sys
import urllib.request

from asgiref.sync import async_to_sync
from django.test import override_settings

from apps.connections import services
from apps.ops import backend

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(600)",
]


def pid_running(pid: int) -> bool:
    stat = backend.read_stat(pid)
    return stat is not None and stat["state"] not in {"Z", "X"}


def processes(env: dict) -> dict[str, dict]:
    """The backend processes recorded in ``env``'s var dir, read in this process
    (a subprocess per poll would be slow); `backend processes --json` is tested
    separately."""
    with override_settings(VAR_DIR=env["STAGEHAND_VAR_DIR"]):
        return {s.record.name: s.as_dict() for s in backend.inspect_processes()}


def healthz(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def receive(layer, channel: str, timeout: float = 10.0) -> dict:
    """Receive one message on ``channel``; fail instead of waiting forever."""

    async def receive_one() -> dict:
        return await asyncio.wait_for(layer.receive(channel), timeout)

    return async_to_sync(receive_one)()


def connect(layer, label: str) -> str:
    """Return a new channel that stands for a server process with one consumer of
    ``label``: counted as the consumer is, and in the label's group as the process's
    hub is (so it receives a drop or reload with or without an interval)."""
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(services.register)(label, channel)
    async_to_sync(layer.group_add)(services.label_group(label), channel)
    return channel
