"""Jobs that drop or reload connections, so that a paced reload can run on a worker.

``jobs run -d connections-reload 'abc123.*' interval_ms=50`` (or the REST API's
``delay``) hands a reload of thousands of browsers, which takes count × interval, to
the workers instead of holding a shell or an HTTP request for that long.
"""

from __future__ import annotations

from apps.jobs.registry import job

from . import services
from .protocol import Move


def _interval(interval_ms: int | str) -> int:
    """Return ``interval_ms`` as a whole number of ms (a schedule's kwargs are text)."""
    if isinstance(interval_ms, int) and not isinstance(interval_ms, bool):
        value = interval_ms
    elif isinstance(interval_ms, str) and interval_ms.strip().isdigit():
        value = int(interval_ms)
    else:
        value = -1
    if value < 0:
        raise ValueError(
            f"interval_ms must be a whole number of milliseconds, 0 or more; got "
            f"{interval_ms!r}."
        )
    return value


def _send(move: Move, labels: tuple[str, ...], interval_ms: int | str) -> str:
    interval = _interval(interval_ms)
    result = services.move(move, services.select(labels), interval_ms=interval)
    return " ".join(filter(None, [result.summary(), result.unreachable_note()]))


@job(
    Move.DROP.job,
    "Close the connections whose label matches the globs (all when none); "
    "interval_ms paces them.",
)
def drop_job(*labels: str, interval_ms: int | str = 0) -> str:
    return _send(Move.DROP, labels, interval_ms)


@job(
    Move.RELOAD.job,
    "Tell the clients whose label matches the globs (all when none) to reload, then "
    "close them; interval_ms paces them.",
)
def reload_job(*labels: str, interval_ms: int | str = 0) -> str:
    return _send(Move.RELOAD, labels, interval_ms)
