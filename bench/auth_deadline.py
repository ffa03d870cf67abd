"""Benchmark: what an authentication deadline costs per pending socket, two ways.

    .venv/bin/python bench/auth_deadline.py [N]

The consumer closes a socket that sends no valid token within
CONNECTIONS_AUTH_TIMEOUT. Two ways to keep that deadline, on one event loop with N
sockets pending at once (default 10,000, as many as a process serves):

- a timer per socket: ``loop.call_later`` when it opens, ``cancel()`` when its
  token is verified (what apps/connections/consumers.py does);
- a sweep: each socket enters a dict when it opens and leaves it when verified; one
  periodic timer (every second) walks the dict and closes the overdue.

For each it prints the time to arm and disarm N (a rush that authenticates), to let
N expire together (a slowloris), the memory held per pending socket, and the sweep's
walk per second while N wait; beside the anchor measured in the same run: one event
loop hop (``await asyncio.sleep(0)``) per socket, the least a handshake already
pays many times over. The load average is printed beside the figures.

    DATABASE_URL=postgres://... REDIS_URL=redis://... \
        .venv/bin/python bench/auth_deadline.py --server IDLE [--attendees M]

does it for real instead: a uvicorn server (as bench/connections.py serves it)
taking ``CONNECTIONS_MAX_PENDING`` = IDLE handshakes, IDLE sockets that open and
never authenticate (a slowloris), then M attendees who retry each 1013 after its
hint, as browsers should. It prints how long until all M are authenticated, with
``CONNECTIONS_AUTH_TIMEOUT`` = 5 and with 0 (no deadline: given up after 30 s), and
the anchor: the same M on the same server with no idle socket. It creates and
deletes a world ``benchdeadline``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import secrets
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEADLINE = 5.0  # CONNECTIONS_AUTH_TIMEOUT of the --server run
GIVE_UP = 30.0  # seconds the attendees keep trying without a deadline


class Socket:
    """Stands for a consumer: what the deadline touches."""

    __slots__ = ("__weakref__", "deadline", "expired", "opened")

    def __init__(self) -> None:
        self.deadline = None
        self.expired = False
        self.opened = 0.0

    def expire(self) -> None:
        self.deadline = None
        self.expired = True


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def memory(make) -> int:
    """Return the bytes that ``make()`` allocates and keeps (traced apart from the
    timings: tracing slows every allocation)."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    kept = make()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    for handle in kept if isinstance(kept, list) else ():
        handle.cancel()
    return held


def per_socket(seconds: float, n: int) -> str:
    return f"{seconds / n * 1e6:.2f} µs"


async def anchor(n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await asyncio.sleep(0)
    return time.perf_counter() - started


async def timers(n: int, timeout: float) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    sockets = [Socket() for _ in range(n)]
    gc.collect()
    started = time.perf_counter()
    for s in sockets:
        s.deadline = loop.call_later(timeout, s.expire)
    armed = time.perf_counter() - started
    started = time.perf_counter()
    for s in sockets:
        s.deadline.cancel()
        s.deadline = None
    await asyncio.sleep(0)  # the loop drops the cancelled handles
    disarmed = time.perf_counter() - started
    held = memory(lambda: [loop.call_later(timeout, s.expire) for s in sockets])
    # A slowloris: N that never authenticate, all due at once.
    for s in sockets:
        s.deadline = loop.call_later(0, s.expire)
    started = time.perf_counter()
    while not all(s.expired for s in sockets):
        await asyncio.sleep(0)
    fired = time.perf_counter() - started
    return {"arm": armed, "disarm": disarmed, "fire": fired, "held": held}


async def sweep(n: int, timeout: float) -> dict[str, float]:
    sockets = [Socket() for _ in range(n)]
    pending: dict[Socket, None] = {}
    gc.collect()
    started = time.perf_counter()
    for s in sockets:
        s.opened = time.monotonic()
        pending[s] = None
    armed = time.perf_counter() - started
    held = memory(lambda: dict.fromkeys(sockets))
    # One walk while all wait, none overdue: what it costs every second.
    started = time.perf_counter()
    cutoff = time.monotonic() - timeout
    overdue = [s for s in pending if s.opened <= cutoff]
    walk = time.perf_counter() - started
    assert not overdue
    started = time.perf_counter()
    for s in sockets:
        del pending[s]
    disarmed = time.perf_counter() - started
    for s in sockets:
        pending[s] = None
    started = time.perf_counter()
    for s in [s for s in pending if s.opened <= time.monotonic()]:
        del pending[s]
        s.expire()
    fired = time.perf_counter() - started
    return {"arm": armed, "disarm": disarmed, "fire": fired, "held": held, "walk": walk}


async def main(n: int) -> None:
    print(f"{n} pending sockets, one event loop ({load()})")
    hop = await anchor(n)
    print(f"  anchor: one loop hop per socket {per_socket(hop, n)}")
    for name, measure in (("timer per socket", timers), ("sweep", sweep)):
        got = await measure(n, 10.0)
        cost = got["arm"] + got["disarm"]
        line = (
            f"  {name}: arm {per_socket(got['arm'], n)}, disarm "
            f"{per_socket(got['disarm'], n)} ({cost / hop:.2f}× the anchor), "
            f"{n} expiring at once {got['fire'] * 1000:.1f} ms, "
            f"{got['held'] / n:.0f} B held per pending socket"
        )
        if "walk" in got:
            line += f", a walk of all {got['walk'] * 1000:.2f} ms every second"
        print(line + f" ({load()})")


async def attend(url: str, frames: list[str], failures) -> tuple[float, int]:
    """Return (seconds until every ``frames`` attendee is in, how many got in);
    the 1013s they were answered are counted in ``failures.busy``."""
    from bench.connections import close_all, open_one  # noqa: PLC0415 (as below)

    started = time.monotonic()
    tries = [asyncio.ensure_future(open_one(url, f, failures)) for f in frames]
    done, late = await asyncio.wait(tries, timeout=GIVE_UP)
    for task in late:
        task.cancel()
    clients = [t.result() for t in done if t.result() is not None]
    took = time.monotonic() - started
    await close_all(clients)
    return took, len(clients)


async def slowloris(url: str, idle_n: int, frames: list[str]) -> str:
    from bench.connections import Failures, close_all, open_clients  # noqa: PLC0415

    started = time.monotonic()
    idle, failed = await open_clients(url, [None] * idle_n)
    opened = time.monotonic() - started
    if failed.count:
        raise SystemExit(f"idle sockets: {failed}")
    retried = Failures()
    took, got = await attend(url, frames, retried)
    await asyncio.sleep(0.5)  # the last closes reach the idle clients
    closed = [ws.close_code for ws in idle if ws.close_code is not None]
    await close_all(idle)
    await asyncio.sleep(1.0)  # let the server forget them
    return (
        f"opened in {opened:.2f} s; then {got}/{len(frames)} attendees in after "
        f"{took:.2f} s, answered 1013 "
        f"{retried.busy} times; {closed.count(4008)} of the {idle_n} idle closed "
        "with 4008 by then"
    )


def server_run(idle_n: int, attendees: int) -> None:
    # Only this mode needs Django, and bench.connections sets the environment for it
    # as it is imported; the timer figures above are taken without either loaded.
    import django  # noqa: PLC0415

    import bench.connections as connections  # noqa: PLC0415

    django.setup()
    from apps.worlds import services as worlds  # noqa: PLC0415
    from apps.worlds.models import World  # noqa: PLC0415

    commit = "bench" + secrets.token_hex(3)
    World.objects.filter(pk="benchdeadline").delete()
    world = worlds.create_world("benchdeadline", "Benchmark", f"{commit}.example.org")
    url = None
    try:
        for timeout in (DEADLINE, 0.0):
            frames = [
                json.dumps(
                    ["authenticate", {"token": worlds.generate_token(world, [], uid=u)}]
                )
                for u in (f"{timeout:g}-{i}" for i in range(attendees))
            ]
            env = {
                **os.environ,
                "STAGEHAND_COMMIT": commit,
                "STAGEHAND_ENVIRONMENT": "bench",
                "PYTHONPATH": str(connections.ROOT),
                "CONNECTIONS_MAX_PENDING": str(idle_n),
                "CONNECTIONS_AUTH_TIMEOUT": str(timeout),
            }
            server = connections.Server("config.asgi:application", env)
            url = f"ws://127.0.0.1:{server.port}/ws/world/benchdeadline/"
            try:
                anchor_s, _ = asyncio.run(attend(url, frames, connections.Failures()))
                print(
                    f"CONNECTIONS_AUTH_TIMEOUT={timeout:g}: {attendees} attendees "
                    f"alone (anchor) {anchor_s:.2f} s ({load()})",
                    flush=True,
                )
                text = asyncio.run(slowloris(url, idle_n, frames))
                print(f"  behind {idle_n} idle sockets: {text} ({load()})", flush=True)
            finally:
                server.stop()
    finally:
        World.objects.filter(pk="benchdeadline").delete()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", type=int, nargs="?", default=10_000)
    parser.add_argument("--server", type=int, metavar="IDLE")
    parser.add_argument("--attendees", type=int, default=200)
    args = parser.parse_args()
    if args.server:
        server_run(args.server, args.attendees)
    else:
        asyncio.run(main(args.n))
