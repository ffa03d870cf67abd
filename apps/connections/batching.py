"""Calls that thousands of handshakes make at once, made together.

In the first minute of an event, and after every drop, hundreds of attendees
authenticate in the same few milliseconds. Each used to take its own turn on the
process's one database thread (a query, an INSERT and its COMMIT, each a round trip)
and its own Redis round trips. A :class:`Batch` gathers the calls made while the
previous batch is running and runs them as one: one query for all the returning
attendees, one INSERT and one COMMIT for all the new ones, one Redis pipeline for
all the registrations. An attendee alone waits for nothing: its call starts the
next batch at once.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

# Calls run together at most; more wait for the next batch.
MAX_BATCH = 500


class Batch:
    """Run ``run_many(list of args)`` for the calls made while one is running.

    ``run_many`` returns one result per call, in order; a result that is an
    exception is raised in its caller only. If ``run_many`` raises, every caller of
    that batch gets the exception.
    """

    def __init__(self, run_many: Callable[[list[tuple]], Awaitable[list[Any]]]):
        self.run_many = run_many
        self.pending: list[tuple[tuple, asyncio.Future]] = []
        self.running = False

    async def __call__(self, *args: Any) -> Any:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((args, future))
        if not self.running:
            self.running = True
            asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self.pending:
                batch = self.pending[:MAX_BATCH]
                del self.pending[:MAX_BATCH]
                try:
                    results = await self.run_many([args for args, _ in batch])
                except BaseException as exc:  # noqa: BLE001 - handed to every caller
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue  # its caller gave up (cancelled)
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self.running = False


class PerLoop:
    """One :class:`Batch` per event loop (futures belong to the loop they run on)."""

    def __init__(self, run_many: Callable[[list[tuple]], Awaitable[list[Any]]]):
        self.run_many = run_many
        self._batches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    async def __call__(self, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        batch = self._batches.get(loop)
        if batch is None:
            batch = self._batches[loop] = Batch(self.run_many)
        return await batch(*args)
