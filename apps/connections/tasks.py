"""Jobs that drop or reload connections, so that a paced reload can run on a worker.

``jobs run -d connections-reload 'abc123.*' interval_ms=50`` (or the REST API's
``delay``) hands a reload of thousands of browsers, which takes count × interval, to
the workers instead of holding a shell or an HTTP request for that long.
``spread_ms=30000`` tells the clients to come back at random within 30 s, as
``connections drop --spread 30s`` does.
"""

from __future__ import annotations

from apps.jobs.registry import job

from . import services
from .protocol import Move


def _milliseconds(name: str, value: int | str, maximum: int | None = None) -> int:
    """Return ``value`` as a whole number of ms (a schedule's kwargs are text)."""
    if isinstance(value, int) and not isinstance(value, bool):
        ms = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        ms = int(value)
    else:
        ms = -1
    if ms < 0 or (maximum is not None and ms > maximum):
        limit = f"from 0 to {maximum:,}" if maximum is not None else "0 or more"
        raise ValueError(
            f"{name} must be a whole number of milliseconds, {limit}; got {value!r}."
        )
    return ms


def interval_param(interval_ms: int | str) -> int:
    """Return the ``interval_ms`` parameter in ms; ValueError saying what it takes."""
    return _milliseconds("interval_ms", interval_ms)


def spread_param(spread_ms: int | str | None) -> int | None:
    """Return the ``spread_ms`` parameter in ms, or None for the default (sized from
    the count); ValueError saying what it takes."""
    if spread_ms is None:
        return None
    try:
        return _milliseconds("spread_ms", spread_ms, services.MAX_SPREAD_MS)
    except ValueError as exc:
        raise ValueError(
            f"{str(exc).rstrip('.')} (30000 is 30 s, 3600000 an hour; 0 for at once; "
            "leave it out for the default, count / CONNECTIONS_RECONNECT_RATE seconds)."
        ) from None


def _check(
    *labels: str, interval_ms: int | str = 0, spread_ms: int | str | None = None
) -> None:
    """ValueError unless the pacing parameters are ones a drop or reload can take."""
    interval_param(interval_ms)
    spread_param(spread_ms)


def _send(
    move: Move,
    labels: tuple[str, ...],
    interval_ms: int | str,
    spread_ms: int | str | None,
) -> str:
    # Both checked before anything is sent.
    interval, spread = interval_param(interval_ms), spread_param(spread_ms)
    result = services.move(
        move, services.select(labels), interval_ms=interval, spread_ms=spread
    )
    return " ".join(filter(None, [result.summary(), result.unreachable_note()]))


@job(
    Move.DROP.job,
    "Close the connections whose label matches the globs (all when none); "
    "interval_ms paces them, spread_ms spreads their return.",
    check=_check,
)
def drop_job(
    *labels: str, interval_ms: int | str = 0, spread_ms: int | str | None = None
) -> str:
    return _send(Move.DROP, labels, interval_ms, spread_ms)


@job(
    Move.RELOAD.job,
    "Tell the clients whose label matches the globs (all when none) to reload, then "
    "close them; interval_ms paces them, spread_ms spreads their return.",
    check=_check,
)
def reload_job(
    *labels: str, interval_ms: int | str = 0, spread_ms: int | str | None = None
) -> str:
    return _send(Move.RELOAD, labels, interval_ms, spread_ms)
