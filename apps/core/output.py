"""Output for people and for scripts, shared by every management command.

Tables are aligned, ``--json`` output is stable, progress bars appear only on a
terminal, and long work ends with a summary line either way.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
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
    """A progress bar drawn on a terminal and silent elsewhere.

    ``stream`` is a command's ``self.stdout`` (an OutputWrapper) or any text stream.
    """

    def __init__(
        self, stream: Any, total: int | None, label: str = "", width: int = 30
    ):
        self.stream = stream
        self.total = total
        self.label = label
        self.width = width
        self.done = 0
        raw = getattr(stream, "_out", stream)
        self.enabled = bool(getattr(raw, "isatty", lambda: False)())

    def advance(self, amount: int = 1) -> None:
        self.done += amount
        if self.enabled:
            self._draw()

    def _draw(self) -> None:
        raw = getattr(self.stream, "_out", self.stream)
        if self.total:
            filled = int(self.width * min(self.done, self.total) / self.total)
            bar = "#" * filled + "-" * (self.width - filled)
            raw.write(f"\r{self.label} [{bar}] {self.done}/{self.total}")
        else:
            raw.write(f"\r{self.label} {self.done}")
        raw.flush()

    def finish(self) -> None:
        if self.enabled:
            raw = getattr(self.stream, "_out", self.stream)
            raw.write("\n")
            raw.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()


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
