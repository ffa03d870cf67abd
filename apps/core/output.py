"""Output for people and for scripts, shared by every management command.

Tables are aligned, ``--json`` output is stable, progress bars appear only on a
terminal, and long work ends with a summary line either way.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from typing import Any, TextIO


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Return rows as an aligned text table with a header line."""
    cells = [[str(h) for h in headers]] + [
        ["" if v is None else str(v) for v in row] for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip()
        for row in cells
    ]
    return "\n".join(lines)


def write_table(
    stream: TextIO, headers: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    stream.write(format_table(headers, rows) + "\n")


def write_json(stream: TextIO, data: Any) -> None:
    stream.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``1 label``, ``2 labels``: a count with its noun in the right number."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def human_size(num_bytes: int | float) -> str:
    """Return a size such as ``1.4 MiB``."""
    size = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    """Return a duration such as ``850 ms``, ``12.3 s``, ``4m 05s`` or ``3h 02m``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    return f"{hours // 24}d {hours % 24:02d}h"


class Progress:
    """Progress of long work: a tqdm bar on a terminal, one summary line elsewhere.

    ``stream`` is a command's ``self.stdout`` (an OutputWrapper) or any text stream;
    ``total`` the amount known up front (None: a count and a rate, no ETA); ``unit``
    ``"B"`` counts bytes (shown as kB, MB, … with a rate in bytes per second), any
    other is a singular noun (``"row"``).
    While a bar is drawn, console log lines are written above it (tqdm's logging
    redirect), never into it. Off a terminal nothing is drawn, and ``finish`` writes
    ``label: amount [of total] in duration (rate)`` unless ``summary`` is false
    (for a command whose own last line says as much). A failed block (an exception
    leaving ``with``) writes no summary.
    """

    def __init__(
        self,
        stream: Any,
        total: int | None,
        label: str = "",
        unit: str = "",
        *,
        summary: bool = True,
    ):
        self.stream = stream
        self.total = total
        self.label = label
        self.unit = unit
        self.summary = summary
        self.done = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._finished = False
        raw = getattr(stream, "_out", stream)
        self.enabled = bool(getattr(raw, "isatty", lambda: False)())
        self._bar: Any = None  # a tqdm bar
        self._redirect: ExitStack | None = None
        if self.enabled:
            # tqdm only for a bar on a terminal: ~5 ms of every command's start-up
            # otherwise (bench/startup.py), and off a terminal there is none.
            from tqdm import tqdm  # noqa: PLC0415
            from tqdm.contrib.logging import logging_redirect_tqdm  # noqa: PLC0415

            bytes_format = (
                "{l_bar}{bar}| {n_fmt}B/{total_fmt}B [{elapsed}<{remaining}, "
                "{rate_fmt}]"
            )
            self._bar = tqdm(
                total=total,
                desc=label.strip() or None,
                unit=unit or "it",
                unit_scale=unit == "B",
                file=raw,
                dynamic_ncols=True,
                leave=True,
                bar_format=bytes_format if unit == "B" and total else None,
            )
            self._redirect = ExitStack()
            self._redirect.enter_context(
                logging_redirect_tqdm(loggers=_console_loggers())
            )

    def advance(self, amount: int = 1) -> None:
        with self._lock:
            self._advance(amount)

    def reach(self, done: int) -> None:
        """Move to ``done``, a running total (a backup's bytes so far). One below
        the last begins another pass over the same total: a restore from S3 reads
        the dump twice, downloading it, then loading it."""
        with self._lock:
            if done < self.done:
                self.done = 0
                if self._bar is not None:
                    self._bar.reset(total=self.total)
            self._advance(done - self.done)

    def _advance(self, amount: int) -> None:
        self.done += amount
        if self._bar is not None:
            if self.total is not None and self.done > self._bar.total:
                # More than the estimate: grow the total rather than pass 100 %.
                self._bar.total = self.done
            self._bar.update(amount)

    def finish(self, failed: bool = False) -> None:
        if self._finished:
            return
        self._finished = True
        if self._bar is not None:
            if not failed and self.total is not None:
                # The total was an estimate (a database's size for its dump, rows
                # counted before deleting): end on what was actually done.
                self._bar.total = self.done
                self._bar.refresh()
            self._bar.close()
            assert self._redirect is not None
            self._redirect.close()
            return
        if self.summary and not failed:
            self.stream.write(self.summary_line() + "\n")

    def summary_line(self) -> str:
        """``Restoring: 83.3 KiB of 83.3 KiB in 12 ms (6.8 MiB/s)``."""
        elapsed = time.monotonic() - self.started

        def amount(n: int | float) -> str:
            return human_size(n) if self.unit == "B" else f"{n:,}"

        text = amount(self.done)
        if self.total is not None:
            text += f" of {amount(self.total)}"
        if self.unit and self.unit != "B":
            # The noun goes with the last number: "1 of 2 rows", "2 rows".
            last = self.done if self.total is None else self.total
            text += " " + counted(last, self.unit).split(" ", 1)[1]
        rate = ""
        if elapsed > 0 and self.done:
            per_second = self.done / elapsed
            if self.unit == "B":
                rate = f" ({human_size(per_second)}/s)"
            else:
                nouns = f" {self.unit}s" if self.unit else ""
                rate = f" ({per_second:,.0f}{nouns}/s)"
        # A label's indent is kept: purge's "   rows" lines up under its section.
        prefix = f"{self.label.rstrip()}: " if self.label.strip() else ""
        return f"{prefix}{text} in {human_duration(elapsed)}{rate}"

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.finish(failed=exc_type is not None)


def _console_loggers() -> list[logging.Logger]:
    """The root logger and every other one that writes to the console itself."""
    found = [logging.root]
    for logger in list(logging.root.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger) and any(
            isinstance(h, logging.StreamHandler)
            and getattr(h, "stream", None) in (sys.stdout, sys.stderr)
            for h in logger.handlers
        ):
            found.append(logger)
    return found


def add_noinput_argument(
    parser: Any, help: str = "do not ask for confirmation"
) -> None:
    """Add Django's usual ``--noinput``/``--no-input`` (``options["interactive"]``)."""
    parser.add_argument(
        "--noinput", "--no-input", action="store_false", dest="interactive", help=help
    )


def confirm(question: str, stdin: TextIO | None = None, stdout: Any = None) -> bool:
    """Ask a yes/no question; anything but y/yes is a no."""
    stdin = stdin or sys.stdin
    (stdout or sys.stdout).write(f"{question} [y/N] ")
    if hasattr(stdout, "flush"):
        stdout.flush()
    answer = stdin.readline()
    return answer.strip().lower() in {"y", "yes"}
