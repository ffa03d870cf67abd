"""Real processes for cross-process tests: uvicorn on a free port, and a private
redis-server that a test may kill."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


class Server:
    """``python -m uvicorn config.asgi:application`` on a socket bound to port 0.

    The socket is bound here and handed over with ``--fd``, so there is no window in
    which another process could take the port.
    """

    def __init__(
        self,
        env: dict[str, str],
        settings_module: str = "config.settings.test",
        log_level: str = "warning",
        extra_args: tuple[str, ...] = (),
    ):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        fd = self.sock.fileno()
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "config.asgi:application",
                "--fd",
                str(fd),
                "--log-level",
                log_level,
                *extra_args,
            ],
            cwd=ROOT,
            env={**env, "DJANGO_SETTINGS_MODULE": settings_module},
            pass_fds=[fd],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60, headers: dict | None = None) -> None:
        """Wait for /healthz; ``headers`` as a proxy sends them (Host, X-Forwarded-Proto)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/healthz", headers=headers or {}
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.output()}")
            try:
                with urllib.request.urlopen(request, timeout=2):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not answer within {timeout} s")

    def kill(self) -> None:
        """Die like a crashed process: no shutdown, no cleanup."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.sock.close()
        self.log.close()

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


def server_env(base: dict[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith("PYTEST")}
    env.update(extra)
    env.setdefault("PYTHONPATH", os.fspath(ROOT))
    return env


REDIS_START_TIMEOUT = 20  # seconds


class PrivateRedis:
    """A redis-server of this test's own, on a free port, that can be killed."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start it empty (nothing saved, nothing loaded) and wait until it answers."""
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + REDIS_START_TIMEOUT
        while not self.answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"redis-server did not answer within {REDIS_START_TIMEOUT} s"
                )
            time.sleep(0.05)

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(7) == b"+PONG\r\n"
        except OSError:
            return False

    def kill(self) -> None:
        """Die like a crashed Redis: SIGKILL, everything in memory gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
