"""What a client may send on the attendees' WebSocket: the one place frames are checked.

A frame is JSON text, an array ``[action, id, {payload}]``; ``ping`` is ``["ping"]``
or ``["ping", ts]``, ``authenticate`` and ``auth.accept_terms`` are
``[action, {payload}]``. :func:`parse` turns the text into a :class:`Frame` or raises
:class:`FrameError` with the code and message the client is answered with, before
any handler, the database or the channel layer sees it:

- at most ``CONNECTIONS_MAX_FRAME_BYTES`` of UTF-8 (``protocol.frame_too_large``,
  the only refusal that closes the connection);
- arrays and objects nested at most :data:`MAX_DEPTH` deep, measured before the text
  is decoded, so deep nesting never reaches the recursive decoder;
- numbers finite, integers within ±(2^53 - 1) (what JavaScript holds exactly);
- no string, key or value, with a NUL character or a lone surrogate;
- the id an integer, a string of at most :data:`MAX_ID_LENGTH` characters, or null;
- each known action's payload fields of the right type and within the lengths of
  the model fields they end up in (:data:`PAYLOADS`).

Everything else is ``protocol.invalid_frame``, except chat text, refused as
``chat.invalid_text``. The token of ``authenticate`` is left to ``verify_token``,
which answers with the ``auth.*`` codes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from apps.core.validation import json_depth, text_problem
from apps.worlds.models import Room

INVALID = "protocol.invalid_frame"
TOO_LARGE = "protocol.frame_too_large"

MAX_DEPTH = 8
MAX_ACTION_LENGTH = 64
MAX_ID_LENGTH = 100
MAX_SAFE_INTEGER = 2**53 - 1
MAX_CHAT_TEXT = 4000
MAX_TERMS = 100
ROOM_ID_LENGTH = Room._meta.get_field("import_id").max_length

# Actions without an id: [action, {payload}] (ping: [action] or [action, ts]).
WITHOUT_ID = {"authenticate", "auth.accept_terms"}


class FrameError(Exception):
    """A frame is refused: answer ``["error", frame_id, {"code", "message"}]``."""

    def __init__(self, code: str, message: str, frame_id: Any = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.frame_id = frame_id


@dataclass(frozen=True)
class Frame:
    action: str
    # None for frames without one; ping's ts for a ping.
    id: Any
    payload: dict


@dataclass(frozen=True)
class Text:
    """A string field of a payload, 1 to ``max_length`` characters."""

    max_length: int
    what: str
    code: str = INVALID
    # Whitespace alone does not count as text (chat messages).
    needs_content: bool = False

    def check(self, name: str, value: Any) -> str | None:
        if (
            not isinstance(value, str)
            or not value
            or len(value) > self.max_length
            or (self.needs_content and not value.strip())
        ):
            return (
                f"{name} must be {self.what}: a non-empty string of at most "
                f"{self.max_length} characters."
            )
        problem = text_problem(value)
        return f"{name} {problem}." if problem else None


@dataclass(frozen=True)
class Ids:
    """A list of at most ``max_items`` integer ids."""

    max_items: int
    what: str
    code: str = INVALID

    def check(self, name: str, value: Any) -> str | None:
        if (
            not isinstance(value, list)
            or len(value) > self.max_items
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in value)
        ):
            return f"{name} must be a list of at most {self.max_items} {self.what}."
        return None


@dataclass(frozen=True)
class Unchecked:
    """A field another layer checks with its own error codes (the token)."""

    code: str = INVALID

    def check(self, name: str, value: Any) -> str | None:
        return None


ROOM = Text(ROOM_ID_LENGTH, "a room id")
PAYLOADS: dict[str, dict[str, Text | Ids | Unchecked]] = {
    "authenticate": {"token": Unchecked()},
    "auth.accept_terms": {"terms": Ids(MAX_TERMS, "terms ids")},
    "room.enter": {"room": ROOM},
    "room.leave": {"room": ROOM},
    "chat.send": {
        "room": ROOM,
        "text": Text(
            MAX_CHAT_TEXT, "the message", code="chat.invalid_text", needs_content=True
        ),
    },
}

SHAPES = {
    "authenticate": 'Authenticate with ["authenticate", {"token": ...}].',
    "auth.accept_terms": 'Accept with ["auth.accept_terms", {"terms": [id, ...]}].',
}


def parse(text_data: str | None, bytes_data: bytes | None, max_bytes: int) -> Frame:
    """Return the frame in ``text_data``, or raise FrameError saying what is wrong."""
    if text_data is None:
        if bytes_data is not None and len(bytes_data) > max_bytes:
            raise _too_large(max_bytes)
        raise FrameError(INVALID, "Frames are JSON text, not binary.")
    # Never fewer bytes than characters: most oversized frames need no encoding. A
    # lone surrogate has no UTF-8 form; its three surrogatepass bytes still count.
    if (
        len(text_data) > max_bytes
        or len(text_data.encode("utf-8", "surrogatepass")) > max_bytes
    ):
        raise _too_large(max_bytes)
    if json_depth(text_data) > MAX_DEPTH:
        raise FrameError(
            INVALID, f"Arrays and objects may nest at most {MAX_DEPTH} deep."
        )
    try:
        data = _DECODER.decode(text_data)
    except ValueError:
        raise FrameError(INVALID, "The frame is not JSON.") from None
    return _frame(data)


def _frame(data: Any) -> Frame:
    if not isinstance(data, list) or not data or not isinstance(data[0], str):
        raise FrameError(INVALID, "Frames are JSON arrays: [action, id, {payload}].")
    action = data[0]
    if not 1 <= len(action) <= MAX_ACTION_LENGTH or text_problem(action):
        raise FrameError(
            INVALID,
            f"The action must be a name of at most {MAX_ACTION_LENGTH} characters.",
        )
    if action == "ping":
        if len(data) > 2:
            raise FrameError(INVALID, 'Ping with ["ping", ts].')
        ts = data[1] if len(data) > 1 else None
        _check_id(ts, "ts")
        return Frame(action, ts, {})
    if action in WITHOUT_ID:
        if len(data) != 2 or not isinstance(data[1], dict):
            raise FrameError(INVALID, SHAPES[action])
        frame_id, payload = None, data[1]
    else:
        if len(data) != 3 or not isinstance(data[2], dict):
            raise FrameError(INVALID, "Frames are [action, id, {payload}].")
        frame_id, payload = data[1], data[2]
        _check_id(frame_id, "The id")
    fields = PAYLOADS.get(action, {})
    for name, rule in fields.items():
        problem = rule.check(name, payload.get(name))
        if problem:
            raise FrameError(rule.code, problem, frame_id)
    _check_strings(payload, skip=set(fields), frame_id=frame_id)
    return Frame(action, frame_id, payload)


def _check_id(value: Any, name: str) -> None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return
    if isinstance(value, float):
        return  # finite, since parse refused the rest
    if (
        isinstance(value, str)
        and len(value) <= MAX_ID_LENGTH
        and not text_problem(value)
    ):
        return
    raise FrameError(
        INVALID,
        f"{name} must be a number, null, or a string of at most {MAX_ID_LENGTH} "
        "characters without NUL or lone surrogates.",
    )


def _check_strings(payload: dict, *, skip: set[str], frame_id: Any) -> None:
    """Refuse any NUL or lone surrogate in the payload, keys included, by JSON path.

    Iterative: the depth is bounded already, but nothing here should recurse.
    """
    pending: list[tuple[str, Any]] = [
        (f"payload.{key}", value) for key, value in payload.items() if key not in skip
    ]
    for key in payload:
        pending.append(("a key of payload", key))
    while pending:
        path, value = pending.pop()
        if isinstance(value, str):
            problem = text_problem(value)
            if problem:
                raise FrameError(INVALID, f"{path} {problem}.", frame_id)
        elif isinstance(value, list):
            pending.extend((f"{path}[{i}]", v) for i, v in enumerate(value))
        elif isinstance(value, dict):
            pending.extend((f"{path}.{k}", v) for k, v in value.items())
            pending.extend((f"a key of {path}", k) for k in value)


def _too_large(max_bytes: int) -> FrameError:
    return FrameError(TOO_LARGE, f"Frames may be at most {max_bytes} bytes.")


def _refuse_constant(name: str) -> Any:
    raise FrameError(INVALID, f"{name} is not a number a frame may carry.")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise FrameError(INVALID, f"The number {text[:20]} is too large.")
    return number


def _safe_int(text: str) -> int:
    # Checked on the digits first: int() of 5,000 digits raises, and is slow before.
    if len(text.lstrip("-")) > 16 or abs(number := int(text)) > MAX_SAFE_INTEGER:
        raise FrameError(
            INVALID,
            f"Integers must be within ±{MAX_SAFE_INTEGER} (2^53 - 1).",
        )
    return number


# One decoder for every frame: json.loads with hooks would build one per call.
_DECODER = json.JSONDecoder(
    parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_safe_int
)
