"""Benchmark: N live connections on one server process, against a bare echo consumer.

    DATABASE_URL=postgres://... REDIS_URL=redis://... \
        .venv/bin/python bench/connections.py [N]          # N defaults to 2000

It serves, one after the other and the same way (uvicorn, one process, the Redis
channel layer), a bare Channels echo consumer and Stagehand's world consumer, connects
N WebSocket clients to each (authenticated with generate_token for Stagehand), and
prints:

- memory per connection (growth of the server's RSS / N) and its ratio to the echo
  consumer's: the anchor, measured in the same run on the same machine;
- how long ``connections list`` takes with N live connections;
- how long ``connections drop`` takes to send, when the server has closed all N
  sockets (its hub's log line), and until the last client has seen its close.

It needs a migrated database (it creates a world ``benchconnections`` and its N
attendees, and deletes them at the end) and Redis; it touches only its own label.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import re
import resource
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
os.environ["DJANGO_DEBUG"] = "False"  # DEBUG keeps every query in memory
# As in production: keep database connections instead of one per query batch.
os.environ.setdefault("CONN_MAX_AGE", "60")
# The benchmark's clients do not ping: keep them counted for the whole run.
os.environ["CONNECTIONS_HEARTBEAT_WINDOW"] = "3600"

TARGET_MEMORY_RATIO = 1.3
TARGET_LIST_S = 0.1  # at 10,000
TARGET_DROP_S = 3.0  # at 10,000
BATCH = 200  # clients connecting at once


class Server:
    """uvicorn serving ``app`` on a socket bound to a free port, handed over by fd."""

    def __init__(self, app: str, env: dict[str, str]):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4096)
        self.port = self.sock.getsockname()[1]
        self.log = tempfile.TemporaryFile()
        fd = self.sock.fileno()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", app, "--fd", str(fd)]
            + ["--log-level", "warning", "--backlog", "4096"],
            cwd=ROOT,
            env=env,
            pass_fds=[fd],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.log.seek(0)
                raise SystemExit(f"server did not start:\n{self.log.read().decode()}")
            try:
                urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/healthz", timeout=2
                )
                break
            except urllib.error.HTTPError:
                break  # the echo app answers HTTP with an error, but it answers
            except OSError:
                time.sleep(0.2)

    def rss(self) -> int:
        """Return the server's resident memory in bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def output(self) -> str:
        """Return the server's log so far (without moving the server's write offset)."""
        fd = self.log.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        self.log.seek(0)
        return "\n".join(self.log.read().decode(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.returncode is None and sys.exc_info()[0] is not None:
            print(f"server log:\n{self.log_tail()}", file=sys.stderr)
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.sock.close()
        self.log.close()


async def open_clients(url: str, frames: list[str | None]) -> list:
    """Connect one client per frame; send it and wait for one reply (if not None)."""
    from websockets.asyncio.client import connect

    async def one(frame: str | None):
        ws = await connect(url, open_timeout=120, ping_interval=None, max_queue=4)
        if frame is not None:
            await ws.send(frame)
            reply = await asyncio.wait_for(ws.recv(), 120)
            if not reply.startswith('["authenticated"') and not reply == frame:
                raise SystemExit(f"unexpected reply: {reply[:200]}")
        return ws

    clients = []
    for start in range(0, len(frames), BATCH):
        clients += await asyncio.gather(
            *(one(f) for f in frames[start : start + BATCH])
        )
    return clients


async def close_all(clients: list) -> None:
    await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)


def measure_memory(server: Server, url: str, frames: list[str | None]) -> tuple:
    """Return (bytes per connection, clients) after connecting len(frames) clients."""

    async def run():
        # Warm up: the first connection loads code and opens pools.
        await close_all(await open_clients(url, frames[:1]))
        await asyncio.sleep(0.5)
        before = server.rss()
        clients = await open_clients(url, frames)
        await asyncio.sleep(1.0)
        return (server.rss() - before) / len(frames), clients

    return run


HUB_LINE = re.compile(
    r"^INFO (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) apps\.connections\.hub "
    r"connections hub \S+: dropped (\d+) connections of (\S+) in ([\d.]+) ms$",
    re.MULTILINE,
)


def server_drop(log: str, label: str, go: float) -> tuple[float, float, int]:
    """Return (s until the hub got the drop, s until it had closed all, how many).

    Read from the hub's log line (millisecond timestamps of the same clock), both
    counted from ``go``, when the command was told to start.
    """
    for stamp, count, line_label, took_ms in HUB_LINE.findall(log):
        if line_label == label:
            done = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
            closed_s = done.timestamp() - go
            return closed_s - float(took_ms) / 1000, closed_s, int(count)
    raise SystemExit(f"the server did not log its drop:\n{log[-2000:]}")


def drop_child(label: str) -> None:
    """Set up, say ready, and on "go" drop ``label``: print count and seconds."""
    import django

    django.setup()
    from apps.connections import services

    print("ready", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    result = services.move(services.Move.DROP, services.select([label]))
    print(result.count, time.perf_counter() - started, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=2000, help="connections")
    parser.add_argument("--drop-child", metavar="LABEL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drop_child:
        drop_child(args.drop_child)
        return
    n = args.n
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < n + 200:
        raise SystemExit(f"raise the open-files limit (ulimit -n) above {n + 200}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    if not settings.REDIS_URL:
        raise SystemExit("set REDIS_URL: the benchmark measures the Redis registry")
    from apps.connections import services
    from apps.connections.registry import get_registry, label_key
    from apps.worlds import services as worlds
    from apps.worlds.models import World

    commit = "bench" + secrets.token_hex(3)
    label = f"{commit}.bench"
    env = {
        **os.environ,
        "STAGEHAND_COMMIT": commit,
        "STAGEHAND_ENVIRONMENT": "bench",
        "PYTHONPATH": str(ROOT),
    }
    World.objects.filter(pk="benchconnections").delete()
    world = worlds.create_world(
        "benchconnections", "Benchmark", f"{commit}.bench.example.org"
    )
    print(f"N = {n} connections, label {label}", flush=True)
    import json

    try:
        # Anchor: the bare echo consumer.
        echo = Server("bench.echo_asgi:application", env)
        try:
            echo_url = f"ws://127.0.0.1:{echo.port}/ws/echo/"
            run = measure_memory(
                echo, echo_url, [json.dumps(["ping", i]) for i in range(n)]
            )

            async def echo_phase():
                per_conn, clients = await run()
                await close_all(clients)
                return per_conn

            echo_per_conn = asyncio.run(echo_phase())
            print(f"echo: {echo_per_conn / 1024:.1f} KiB per connection", flush=True)
        finally:
            echo.stop()

        started = time.monotonic()
        tokens = [
            json.dumps(
                [
                    "authenticate",
                    {"token": worlds.generate_token(world, [], uid=f"b{i}")},
                ]
            )
            for i in range(n)
        ]
        token_s = time.monotonic() - started

        ours = Server("config.asgi:application", env)
        try:
            url = f"ws://127.0.0.1:{ours.port}/ws/world/benchconnections/"
            run = measure_memory(ours, url, tokens)

            async def our_phase():
                started = time.monotonic()
                per_conn, clients = await run()
                connect_s = time.monotonic() - started
                count = services.list_labels()
                found = {c.label: c.connections for c in count}.get(label)
                if found != n:
                    raise SystemExit(f"connections list shows {found}, expected {n}")
                list_times = []
                for _ in range(7):
                    t0 = time.perf_counter()
                    await asyncio.to_thread(
                        call_command,
                        "connections",
                        "list",
                        stdout=open(os.devnull, "w"),
                    )
                    list_times.append(time.perf_counter() - t0)
                # The drop runs in its own process, as `connections drop` does,
                # set up before the clock starts so Django's start-up is not timed.
                child = await asyncio.create_subprocess_exec(
                    sys.executable,
                    __file__,
                    "--drop-child",
                    label,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    env=env,
                )
                assert (await child.stdout.readline()).strip() == b"ready"
                go = time.time()
                t0 = time.perf_counter()
                child.stdin.write(b"go\n")
                await child.stdin.drain()
                reply = (await child.stdout.readline()).split()
                await asyncio.gather(*(ws.wait_closed() for ws in clients))
                drop_all_s = time.perf_counter() - t0
                await child.wait()
                dropped, drop_cmd_s = int(reply[0]), float(reply[1])
                if dropped != n:
                    raise SystemExit(f"dropped {dropped}, expected {n}")
                server = server_drop(ours.output(), label, go)
                return per_conn, connect_s, list_times, drop_cmd_s, drop_all_s, server

            per_conn, connect_s, list_times, drop_cmd_s, drop_all_s, server = (
                asyncio.run(our_phase())
            )
        finally:
            ours.stop()
    finally:
        World.objects.filter(pk="benchconnections").delete()
        get_registry()._client().delete(label_key(label))

    ratio = per_conn / echo_per_conn
    list_s = statistics.median(list_times)
    print(f"tokens generated             {token_s:.1f} s")
    print(f"connect + authenticate all   {connect_s:.1f} s")
    print(f"echo consumer memory/conn    {echo_per_conn / 1024:.1f} KiB  (anchor)")
    print(f"world consumer memory/conn   {per_conn / 1024:.1f} KiB")
    print(
        f"memory ratio                 {ratio:.2f}x the echo consumer "
        f"(target <= {TARGET_MEMORY_RATIO}x)"
    )
    print(
        f"connections list             {list_s * 1000:.1f} ms median of 7 "
        f"(target < {TARGET_LIST_S * 1000:.0f} ms at 10,000)"
    )
    print(
        f"connections drop (sent all)  {drop_cmd_s * 1000:.0f} ms (in its own process)"
    )
    got_s, closed_s, server_n = server
    print(
        f"server: hub got the message  {got_s * 1000:.0f} ms after the start; closed "
        f"{server_n} in {(closed_s - got_s) * 1000:.0f} ms"
    )
    print(
        f"drop, server closed all      {closed_s * 1000:.0f} ms "
        f"(target < {TARGET_DROP_S:.0f} s at 10,000)"
    )
    print(f"drop until all {n} clients saw it   {drop_all_s * 1000:.0f} ms")


if __name__ == "__main__":
    main()
