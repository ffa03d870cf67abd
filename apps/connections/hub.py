"""One control channel per server process (per event loop) for its live connections.

A label's channel-layer group has one member per server process, its hub, instead
of one per consumer. The first consumer on an event loop starts the hub: the hub
takes a channel of its own from the layer (``new_channel``), receives on it in one
task, and joins the group of each label it serves (``group_add``) once, when the
first consumer of that label arrives. It keeps the consumers of each label in a weak
set, so a consumer that dies without saying goodbye does not linger.

``connections drop`` without ``--interval`` sends one message per label to the
group. Each process's hub receives that one message and closes all of its consumers
of the label at once, and forgets them in the registry in one Redis round trip.
(Before, every consumer was in the group: a drop put one message per connection into
the process's shared inbox, which channels-redis reads one round trip at a time, and
each closing consumer then made two more Redis calls; 10,000 connections took 36 s.)
``force_reload`` without interval sends each the reload frame, waits the grace, and
closes them the same way. With ``--interval-ms`` the commands address consumers one
by one by their channel names; each consumer hands its own drop or reload to the
hub, so both are implemented once (``Hub.move``). With a spread, each client is told
a random ``reconnect_after_ms`` within it first.

The hub also records its channel in the registry's set of processes, and answers a
command's ``connections.ping`` at once: a command asks the hubs of the processes it
is about to reach, and counts the connections of a silent one (killed) unreachable.

channels-redis forgets group members after its ``group_expiry`` (a day by default),
and a Redis restart forgets them at once, so the hub renews its memberships every
``CONNECTIONS_HEARTBEAT_REFRESH`` seconds, and at once when the channel layer says
Redis is back (``layer.restored``, see ``layer.py``). A process that is killed leaves one stale
member per label behind, which swallows a message now and then until it expires.

Only the layer's public API is used (``new_channel``, ``receive``, ``group_add``,
``group_discard``), so the in-memory layer works the same within one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import random
import threading
import time
import weakref
from collections import defaultdict
from typing import Any

from django.conf import settings

from . import services
from .layer import REDIS_ERRORS, RESTORED, UNAVAILABLE
from .protocol import DROP, PING, PONG, RELOAD, Move

logger = logging.getLogger(__name__)

# Sockets closed (or told to reload) per step of a drop or reload; the event loop
# serves the other clients between steps.
CLOSE_BATCH = 500
# The longest pause between attempts when the layer fails to receive (seconds).
MAX_BACKOFF = 5.0
# How long a stopping hub tries to leave its groups (seconds).
LEAVE_TIMEOUT = 2.0

_hubs: dict[tuple[asyncio.AbstractEventLoop, Any], Hub] = {}


async def hub_for(layer) -> Hub:
    """Return the running event loop's hub on ``layer``, starting it on first use."""
    key = (asyncio.get_running_loop(), layer)
    hub = _hubs.get(key)
    if hub is None:
        channel = await layer.new_channel()
        hub = _hubs.get(key)  # another consumer may have started it meanwhile
        if hub is None:
            hub = _hubs[key] = Hub(layer, channel)
            hub.task.add_done_callback(functools.partial(_forget_hub, key, hub))
    return hub


def _forget_hub(key: tuple, hub: Hub, task: asyncio.Task) -> None:
    if _hubs.get(key) is hub:
        del _hubs[key]


_freezes = 0  # drops and reloads of this process now closing sockets
_freezes_lock = threading.Lock()  # hubs of event loops in other threads share them


@contextlib.contextmanager
def collecting_only_new_objects():
    """Keep the garbage collector to the objects made from now on, until the end.

    A process serving 10,000 attendees holds millions of tracked objects, and
    closing them all allocates enough to trigger full collections, each of which
    scans every one of those objects while they are all still alive: at 10,000
    sockets, 1.7 s of a 3.4 s drop. ``gc.freeze`` sets the existing objects aside
    in O(1); the young garbage the closes make is still collected, and at the end
    ``gc.unfreeze`` hands the survivors back to the oldest generation, by then
    mostly freed by reference counting. Drops of two labels at once share one
    freeze. If something else has frozen objects (a pre-forking server's start-up,
    say), it owns the frozen set, and this leaves it alone.
    """
    global _freezes
    with _freezes_lock:
        mine = _freezes > 0 or gc.get_freeze_count() == 0
        if mine:
            if _freezes == 0:
                gc.freeze()
            _freezes += 1
    try:
        yield
    finally:
        if mine:
            with _freezes_lock:
                _freezes -= 1
                if _freezes == 0:
                    gc.unfreeze()


class Hub:
    """The consumers of one event loop, per label, and the channel that reaches them."""

    def __init__(self, layer, channel: str):
        self.layer = layer
        self.channel = channel
        self.consumers: dict[str, weakref.WeakSet] = defaultdict(weakref.WeakSet)
        # Labels whose group this hub is in (renewed by refresh()).
        self.joined: set[str] = set()
        self._joining: dict[str, asyncio.Future] = {}
        self._work: set[asyncio.Task] = set()
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name=f"connections hub {channel}"
        )

    # Consumers ---------------------------------------------------------------------

    async def add(self, consumer) -> None:
        """Make ``consumer`` reachable through its label's group (joined once)."""
        label = consumer.label
        self.consumers[label].add(consumer)
        try:
            await self._join(label)
        except REDIS_ERRORS:
            # Redis away: the consumer stays, and refresh() joins once it is back.
            logger.warning(
                "connections hub %s: could not join the group of %s yet",
                self.channel,
                label,
            )
        except BaseException:
            self.consumers[label].discard(consumer)
            raise

    def discard(self, consumer) -> None:
        consumers = self.consumers.get(consumer.label)
        if consumers is not None:
            consumers.discard(consumer)

    def live(self, label: str) -> list:
        """Return the consumers of ``label`` that are not closing."""
        return [c for c in list(self.consumers.get(label, ())) if not c.closing]

    async def _join(self, label: str) -> None:
        if label in self.joined:
            return
        joining = self._joining.get(label)
        if joining is None:
            joining = asyncio.ensure_future(self._group_add(label))
            self._joining[label] = joining
            joining.add_done_callback(functools.partial(self._joined, label))
        # Shielded: one consumer giving up must not cancel the join for the others.
        await asyncio.shield(joining)

    async def _group_add(self, label: str) -> None:
        await self.layer.group_add(services.label_group(label), self.channel)
        self.joined.add(label)
        await services.process_alive(self.channel)

    def _joined(self, label: str, joining: asyncio.Future) -> None:
        del self._joining[label]
        if not joining.cancelled():
            joining.exception()  # the waiting consumers raise it; the next one retries

    # The hub's own task ------------------------------------------------------------

    async def _run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._receive_forever())
                tasks.create_task(self._refresh_forever())
        finally:
            await self._leave()

    async def _receive_forever(self) -> None:
        failures = 0
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except Exception:
                # Redis away or restarting: the sockets stay open, so keep trying.
                failures += 1
                pause = min(0.1 * 2**failures, MAX_BACKOFF)
                logger.exception(
                    "connections hub %s: receiving failed; retrying in %.1f s",
                    self.channel,
                    pause,
                )
                await asyncio.sleep(pause)
                continue
            failures = 0
            self.handle(message)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(settings.CONNECTIONS_HEARTBEAT_REFRESH)
            await self.refresh()

    async def refresh(self) -> bool:
        """Renew this hub's membership of every joined label's group.

        Return whether there was any to renew. Labels whose consumers arrived while
        Redis was away are joined now. A failure is logged, and the next refresh
        tries again.
        """
        waiting = {label for label, consumers in self.consumers.items() if consumers}
        labels = sorted(self.joined | waiting)
        if labels:
            try:
                await services.process_alive(self.channel)
            except REDIS_ERRORS as exc:
                logger.warning(
                    "connections hub %s: could not renew its heartbeat (%s)",
                    self.channel,
                    exc,
                )
        for label in labels:
            try:
                await self.layer.group_add(services.label_group(label), self.channel)
                self.joined.add(label)
            except REDIS_ERRORS as exc:
                # Redis away: said once per refresh, without a traceback each time.
                logger.warning(
                    "connections hub %s: could not renew the group of %s (%s)",
                    self.channel,
                    label,
                    exc,
                )
            except Exception:
                logger.exception(
                    "connections hub %s: could not renew the group of %s",
                    self.channel,
                    label,
                )
        return bool(labels)

    async def _leave(self) -> None:
        """Leave the groups, so that a process that stops leaves no member behind."""
        labels, self.joined = sorted(self.joined), set()

        async def leave() -> None:
            for label in labels:
                await self.layer.group_discard(
                    services.label_group(label), self.channel
                )
            if labels:
                await services.process_left(self.channel)

        try:
            await asyncio.wait_for(leave(), LEAVE_TIMEOUT)
        except Exception:
            # Best effort: a member left behind expires with the group.
            logger.warning(
                "connections hub %s: could not leave its groups", self.channel
            )

    # Messages ----------------------------------------------------------------------

    def handle(self, message: dict) -> bool:
        """Start acting on a message to a label's group; return whether it is one."""
        kind, label = message.get("type"), message.get("label")
        if kind == UNAVAILABLE:
            return True  # the consumers tell their clients; nothing to close
        if kind == PING:
            # A command asks whether this process is alive before counting its
            # connections as reached (services.move).
            reply_to = message.get("reply_to")
            work = self.pong(reply_to) if isinstance(reply_to, str) else None
        elif kind == RESTORED:
            # A Redis restarted empty has forgotten this hub's memberships.
            work = self.refresh()
        elif not isinstance(label, str):
            work = None
        elif kind in (DROP, RELOAD):
            spread = message.get("spread_ms")
            spread = spread if isinstance(spread, int) and spread > 0 else 0
            work = self.move(Move.of(kind), label, self.live(label), spread_ms=spread)
        else:
            work = None
        if work is None:
            logger.warning(
                "connections hub %s: ignored a message of type %r with label %r",
                self.channel,
                kind,
                label,
            )
            return False
        self._run_apart(work)
        return True

    async def pong(self, reply_to: str) -> None:
        await self.layer.send(reply_to, {"type": PONG, "hub": self.channel})

    def start(self, move: Move, consumer, hint_ms: int | None) -> None:
        """Start moving one consumer (a paced drop or reload), with its hint."""
        self._run_apart(
            self.move(
                move, consumer.label, [consumer], hint_ms=hint_ms, level=logging.DEBUG
            )
        )

    def _run_apart(self, work) -> None:
        # A task of its own: a reload's grace must not hold up the next message.
        task = asyncio.ensure_future(work)
        self._work.add(task)
        task.add_done_callback(self._work_done)

    def _work_done(self, task: asyncio.Task) -> None:
        self._work.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "connections hub %s: a drop or reload failed",
                self.channel,
                exc_info=task.exception(),
            )

    async def drop(self, label: str) -> int:
        """Close this process's connections of ``label`` (1001); return how many."""
        return await self.move(Move.DROP, label, self.live(label))

    async def reload(self, label: str) -> int:
        """Tell this process's clients of ``label`` to reload, then close them.

        They are closed ``CONNECTIONS_RELOAD_GRACE`` seconds after the frame, all
        at once; return how many were told.
        """
        return await self.move(Move.RELOAD, label, self.live(label))

    async def move(
        self,
        move: Move,
        label: str,
        consumers: list,
        *,
        spread_ms: int = 0,
        hint_ms: int | None = None,
        level: int = logging.INFO,
    ) -> int:
        """Drop or reload ``consumers`` of ``label``; return how many.

        The one implementation of both, for a whole label (one message to the
        group) and for one consumer (a paced send to its channel). Each client is
        told when to come back: ``hint_ms``, or a random time within ``spread_ms``;
        with neither, nothing (a drop then only closes).
        """
        started = time.monotonic()
        if hint_ms is not None:
            hints = [hint_ms] * len(consumers)
        elif spread_ms:
            hints = [random.randint(0, spread_ms) for _ in consumers]
        else:
            hints = [None] * len(consumers)
        if move is Move.RELOAD:
            with collecting_only_new_objects():
                for start in range(0, len(consumers), CLOSE_BATCH):
                    batch = range(start, min(start + CLOSE_BATCH, len(consumers)))
                    self._log_failures(
                        "tell to reload",
                        await asyncio.gather(
                            *(consumers[i].tell_reload(hints[i]) for i in batch),
                            return_exceptions=True,
                        ),
                    )
            await asyncio.sleep(settings.CONNECTIONS_RELOAD_GRACE)
            hints = [None] * len(consumers)  # told already
        closed = await self._close(label, consumers, hints)
        if move is Move.DROP:
            logger.log(
                level,
                "connections hub %s: dropped %d connections of %s in %.0f ms",
                self.channel,
                closed,
                label,
                (time.monotonic() - started) * 1000,
            )
            return closed
        logger.log(
            level,
            "connections hub %s: told %d connections of %s to reload, closed %d",
            self.channel,
            len(consumers),
            label,
            closed,
        )
        return len(consumers)

    async def _close(self, label: str, consumers: list, hints: list) -> int:
        # From the first allocation on: a full collection can start anywhere here.
        with collecting_only_new_objects():
            return await self._close_all(label, consumers, hints)

    async def _close_all(self, label: str, consumers: list, hints: list) -> int:
        # Those that closed or went away meanwhile are no longer in the set.
        here = self.consumers.get(label, ())
        kept = [
            (c, hint)
            for c, hint in zip(consumers, hints, strict=True)
            if c in here and not c.closing
        ]
        consumers = [c for c, _ in kept]
        # The consumers leave their registry entries to us: one round trip for all.
        forget = asyncio.ensure_future(
            services.unregister(label, [c.detach() for c in consumers])
        )
        failures = []
        for index, (consumer, hint) in enumerate(kept):
            if index and not index % CLOSE_BATCH:
                await asyncio.sleep(0)  # let the loop serve the others meanwhile
            # One after the other, not a task each: a close only writes a frame.
            try:
                if hint is not None:
                    await consumer.tell_drop(hint)
                await consumer.close_from_hub()
            except Exception as exc:
                failures.append(exc)
        self._log_failures("close", failures)
        try:
            await forget
        except Exception:
            logger.exception(
                "connections hub %s: could not unregister %d closed connections of "
                "%s; they age out of the count",
                self.channel,
                len(consumers),
                label,
            )
        return len(consumers)

    def _log_failures(self, what: str, results: list) -> None:
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            logger.warning(
                "connections hub %s: could not %s %d connections",
                self.channel,
                what,
                len(failures),
                exc_info=failures[0],
            )
