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
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
import tracemalloc


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


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000))
