"""Benchmark: N live connections, against a bare echo consumer served the same way.

    DATABASE_URL=postgres://... REDIS_URL=redis://... \
        .venv/bin/python bench/connections.py [N] [--processes 1|2] [--skip-steady]

It serves, the same way (uvicorn, the Redis channel layer, one process or two on one
listening socket), a bare Channels echo consumer and Stagehand's world consumer,
both up for the whole run, and measures them alternately, so that the machine's load
weighs on both sides. It prints, each with the load average beside it:

- the connect rate: N clients connecting (``BATCH`` at a time) and getting the first
  reply: the echo of a ping (the anchor), ``authenticated`` for N new attendees and
  again for the same N returning; the ratios to the anchor, failures and timeouts;
- the storm: N connected attendees, an unpaced ``connections drop``, every client
  reconnecting at once as browsers do; the time until all N are authenticated again,
  failures, the servers' peak RSS; against the echo consumer's storm (N clients
  connecting at once);
- unless ``--skip-steady``: memory per connection (growth of the server's RSS / N)
  against the echo consumer's; how long ``connections list`` takes with N live
  connections; how long ``connections drop`` takes to send, when the server has
  closed all N sockets (its hub's log line), and until the last client has seen its
  close (one process only).

It needs a migrated database (it creates a world ``benchconnections`` and its N
attendees, and deletes them at the end) and Redis; it touches only its own label.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
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
TARGET_CONNECT_RATIO = 0.5  # of the echo consumer's connect rate
BATCH = 200  # clients connecting at once, except in the storm
TIMEOUT = 120  # seconds a client waits for its handshake and its first reply


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


class Server:
    """uvicorn serving ``app`` in ``processes`` processes on one listening socket
    bound to a free port, handed over by fd (the kernel spreads the connections)."""

    def __init__(self, app: str, env: dict[str, str], processes: int = 1):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4096)
        self.port = self.sock.getsockname()[1]
        self.log = tempfile.TemporaryFile()
        fd = self.sock.fileno()
        self.processes = [
            subprocess.Popen(
                [sys.executable, "-m", "uvicorn", app, "--fd", str(fd)]
                + ["--log-level", "warning", "--backlog", "4096"],
                cwd=ROOT,
                env=env,
                pass_fds=[fd],
                stdout=self.log,
                stderr=subprocess.STDOUT,
            )
            for _ in range(processes)
        ]
        self.process = self.processes[0]
        deadline = time.monotonic() + 60
        while True:
            if (
                any(p.poll() is not None for p in self.processes)
                or time.monotonic() > deadline
            ):
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

    def _status(self, field: str) -> int:
        total = 0
        for process in self.processes:
            for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    total += int(line.split()[1]) * 1024
        return total

    def rss(self) -> int:
        """Return the servers' resident memory in bytes."""
        return self._status("VmRSS")

    def peak_rss(self) -> int:
        """Return the sum of the server processes' peak resident memory in bytes."""
        return self._status("VmHWM")

    def output(self) -> str:
        """Return the server's log so far (without moving the server's write offset)."""
        fd = self.log.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        self.log.seek(0)
        return "\n".join(self.log.read().decode(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if sys.exc_info()[0] is not None:
            print(f"server log:\n{self.log_tail()}", file=sys.stderr)
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.sock.close()
        self.log.close()


class Failures:
    """Handshakes and first replies that failed or timed out, by kind; and how many
    were told to come back later (1013, then retried as told)."""

    def __init__(self) -> None:
        self.kinds: dict[str, int] = {}
        self.busy = 0

    def add(self, exc: BaseException) -> None:
        kind = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
        self.kinds[kind] = self.kinds.get(kind, 0) + 1

    @property
    def count(self) -> int:
        return sum(self.kinds.values())

    def __str__(self) -> str:
        text = ", ".join(f"{n} {kind}" for kind, n in sorted(self.kinds.items()))
        busy = f", {self.busy} told to retry (1013)" if self.busy else ""
        return (text or "0 failed") + busy


async def open_one(url: str, frame: str | None, failures: Failures):
    """Connect, send ``frame`` and wait for its reply; None (counted) on failure."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    try:
        while True:
            ws = await connect(
                url, open_timeout=TIMEOUT, ping_interval=None, max_queue=4
            )
            if frame is None:
                return ws
            try:
                await ws.send(frame)
            except ConnectionClosed:
                pass  # refused at once (1013): its reason is waiting to be read
            reply = await asyncio.wait_for(ws.recv(), TIMEOUT)
            if reply.startswith('["authenticated"') or reply == frame:
                return ws
            if '"server.busy"' not in reply:
                raise RuntimeError(f"unexpected reply: {reply[:200]}")
            # Overloaded: come back when told, as a browser should.
            failures.busy += 1
            await ws.close()
            await asyncio.sleep(json.loads(reply)[1]["reconnect_after_ms"] / 1000)
    except Exception as exc:
        failures.add(exc)
        return None


async def open_clients(
    url: str, frames: list[str | None], at_once: int = BATCH
) -> tuple[list, Failures]:
    """Connect one client per frame, ``at_once`` at a time; return them, failures."""
    failures = Failures()
    clients = []
    for start in range(0, len(frames), at_once):
        opened = await asyncio.gather(
            *(open_one(url, f, failures) for f in frames[start : start + at_once])
        )
        clients += [ws for ws in opened if ws is not None]
    return clients, failures


async def close_all(clients: list) -> None:
    await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)


async def timed_connect(url: str, frames: list[str | None]) -> tuple[float, Failures]:
    """Return (seconds to connect all, failures); the clients are closed after."""
    started = time.monotonic()
    clients, failures = await open_clients(url, frames)
    took = time.monotonic() - started
    await close_all(clients)
    await asyncio.sleep(1.0)  # let the server forget them before the next round
    return took, failures


def measure_memory(server: Server, url: str, frames: list[str | None]) -> tuple:
    """Return (bytes per connection, clients, seconds to connect them all) after
    connecting len(frames) clients."""

    async def run():
        before = server.rss()
        started = time.monotonic()
        clients, failures = await open_clients(url, frames)
        took = time.monotonic() - started
        if failures.count:
            raise SystemExit(f"memory phase: {failures}")
        await asyncio.sleep(1.0)
        return (server.rss() - before) / len(frames), clients, took

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
    print(result.count, result.unreachable, time.perf_counter() - started, flush=True)


async def start_drop(label: str, env: dict) -> asyncio.subprocess.Process:
    """Start a drop in its own process, as `connections drop` runs, set up before
    the clock starts so that Django's start-up is not timed; ``go`` starts it."""
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
    return child


async def go(child) -> tuple[int, int, float]:
    child.stdin.write(b"go\n")
    await child.stdin.drain()
    reply = (await child.stdout.readline()).split()
    await child.wait()
    return int(reply[0]), int(reply[1]), float(reply[2])


async def echo_storm(url: str, n: int) -> tuple[float, Failures]:
    """N echo clients connecting at once: the stack's own storm."""
    frames = [json.dumps(["ping", i]) for i in range(n)]
    started = time.monotonic()
    clients, failures = await open_clients(url, frames, at_once=n)
    took = time.monotonic() - started
    await close_all(clients)
    await asyncio.sleep(1.0)
    return took, failures


async def our_storm(
    url: str, tokens: list[str], label: str, env: dict
) -> tuple[float, float, int, Failures]:
    """N attendees; an unpaced drop; all reconnect at once as soon as they see it.

    Return (s from the drop's start until all are authenticated again, s until the
    last client saw its close, how many the drop reached, failures of the
    reconnects).
    """
    clients, failures = await open_clients(url, tokens)
    if failures.count:
        raise SystemExit(f"storm set-up: {failures}")
    child = await start_drop(label, env)
    again = Failures()

    async def come_back(ws, frame):
        await ws.wait_closed()
        seen = time.monotonic()
        return seen, await open_one(url, frame, again)

    returns = [
        asyncio.ensure_future(come_back(ws, frame))
        for ws, frame in zip(clients, tokens, strict=True)
    ]
    started = time.monotonic()
    dropped, _, _ = await go(child)
    results = await asyncio.gather(*returns)
    took = time.monotonic() - started
    closes_seen = max(seen for seen, _ in results) - started
    await close_all([ws for _, ws in results if ws is not None])
    await asyncio.sleep(1.0)
    return took, closes_seen, dropped, again


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=2000, help="connections")
    parser.add_argument(
        "--processes", type=int, default=1, help="server processes (1 or 2)"
    )
    parser.add_argument(
        "--skip-steady",
        action="store_true",
        help="only the connect rates and the storm (not memory, list, drop)",
    )
    parser.add_argument("--drop-child", metavar="LABEL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drop_child:
        drop_child(args.drop_child)
        return
    n = args.n
    steady = not args.skip_steady and args.processes == 1
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
    from apps.core.output import counted
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
    print(
        f"N = {n} connections, {counted(args.processes, 'server process', 'server processes')}, "
        f"label {label}, {load()}",
        flush=True,
    )
    started = time.monotonic()
    tokens = [
        json.dumps(
            ["authenticate", {"token": worlds.generate_token(world, [], uid=f"b{i}")}]
        )
        for i in range(n)
    ]
    pings = [json.dumps(["ping", i]) for i in range(n)]
    warm = [
        json.dumps(
            ["authenticate", {"token": worlds.generate_token(world, [], uid=f"w{i}")}]
        )
        for i in range(4 * args.processes)
    ]
    print(
        f"tokens generated             {time.monotonic() - started:.1f} s", flush=True
    )
    figures: dict = {}

    def report(name: str, text: str) -> None:
        figures[name] = text
        print(f"{name:<32} {text}  ({load()})", flush=True)

    echo = Server("bench.echo_asgi:application", env, args.processes)
    ours = Server("config.asgi:application", env, args.processes)
    echo_url = f"ws://127.0.0.1:{echo.port}/ws/echo/"
    url = f"ws://127.0.0.1:{ours.port}/ws/world/benchconnections/"
    try:

        async def run() -> None:
            # Warm up: the first connections load code and open pools.
            await timed_connect(echo_url, pings[: 4 * args.processes])
            await timed_connect(url, warm)
            if steady:
                # Memory first, while the servers have not held N connections yet.
                await steady_phase()
                echo_s, echo_f = figures["_echo"]
                new_s, new_f = figures["_new"]
            else:
                echo_s, echo_f = await timed_connect(echo_url, pings)
                new_s, new_f = await timed_connect(url, tokens)
            report("echo: connect + ping (anchor)", f"{echo_s:.2f} s, {echo_f}")
            report(
                "new attendees: connect + auth",
                f"{new_s:.2f} s, {new_f}, {echo_s / new_s:.2f}x the echo rate "
                f"(target >= {TARGET_CONNECT_RATIO}x)",
            )
            echo2_s, echo2_f = await timed_connect(echo_url, pings)
            report("echo again (anchor)", f"{echo2_s:.2f} s, {echo2_f}")
            back_s, back_f = await timed_connect(url, tokens)
            report(
                "returning attendees",
                f"{back_s:.2f} s, {back_f}, {echo2_s / back_s:.2f}x the echo rate "
                f"(target >= {TARGET_CONNECT_RATIO}x)",
            )
            storm_echo_s, storm_echo_f = await echo_storm(echo_url, n)
            report(
                "echo storm: N at once (anchor)",
                f"{storm_echo_s:.2f} s, {storm_echo_f}, peak RSS "
                f"{echo.peak_rss() / 2**20:.0f} MiB",
            )
            took, seen, dropped, again = await our_storm(url, tokens, label, env)
            report(
                "storm: drop, all reconnect",
                f"{took:.2f} s until all {n} authenticated again ({dropped} "
                f"dropped, last close seen at {seen:.2f} s), {again}, peak RSS "
                f"{ours.peak_rss() / 2**20:.0f} MiB, {storm_echo_s / took:.2f}x the "
                "echo storm's rate",
            )

        async def steady_phase() -> None:
            per_echo, clients, took = await measure_memory(echo, echo_url, pings)()
            figures["_echo"] = (took, Failures())
            await close_all(clients)
            await asyncio.sleep(1.0)
            per_conn, clients, took = await measure_memory(ours, url, tokens)()
            figures["_new"] = (took, Failures())
            found = {c.label: c.connections for c in services.list_labels()}.get(label)
            if found != n:
                raise SystemExit(f"connections list shows {found}, expected {n}")
            list_times = []
            for _ in range(7):
                t0 = time.perf_counter()
                await asyncio.to_thread(
                    call_command, "connections", "list", stdout=open(os.devnull, "w")
                )
                list_times.append(time.perf_counter() - t0)
            child = await start_drop(label, env)
            when = time.time()
            t0 = time.perf_counter()
            waiting = asyncio.gather(*(ws.wait_closed() for ws in clients))
            dropped, _, drop_cmd_s = await go(child)
            await waiting
            drop_all_s = time.perf_counter() - t0
            if dropped != n:
                raise SystemExit(f"dropped {dropped}, expected {n}")
            # The hub logs once it has also unregistered them: after the closes.
            for _ in range(100):
                if HUB_LINE.search(ours.output()):
                    break
                await asyncio.sleep(0.1)
            got_s, closed_s, server_n = server_drop(ours.output(), label, when)
            report(
                "memory per connection",
                f"{per_conn / 1024:.1f} KiB, echo {per_echo / 1024:.1f} KiB: "
                f"{per_conn / per_echo:.2f}x (target <= {TARGET_MEMORY_RATIO}x)",
            )
            report(
                "connections list",
                f"{statistics.median(list_times) * 1000:.1f} ms median of 7 "
                f"(target < {TARGET_LIST_S * 1000:.0f} ms at 10,000)",
            )
            report(
                "connections drop",
                f"sent in {drop_cmd_s * 1000:.0f} ms; hub got it at "
                f"{got_s * 1000:.0f} ms, closed {server_n} by {closed_s * 1000:.0f} "
                f"ms (target < {TARGET_DROP_S:.0f} s at 10,000); last client saw it "
                f"at {drop_all_s * 1000:.0f} ms",
            )
            await asyncio.sleep(1.0)

        asyncio.run(run())
    finally:
        echo.stop()
        ours.stop()
        World.objects.filter(pk="benchconnections").delete()
        get_registry()._client().delete(label_key(label))


if __name__ == "__main__":
    main()
