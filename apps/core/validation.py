"""Rules every edge applies to what arrives from outside (a file, a request, a frame).

A value that PostgreSQL or Python cannot hold is refused here with a message, instead
of failing later as a DataError, a UnicodeEncodeError or a RecursionError:

- text: no NUL character (PostgreSQL refuses it in text and jsonb) and no lone
  surrogate (not Unicode; it cannot be encoded as UTF-8);
- numbers: finite, and within a signed 64-bit integer's range;
- JSON documents: nested at most :data:`MAX_JSON_DEPTH` objects and lists deep, which
  every part of Stagehand that copies, stores or prints them can handle.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# Deep enough for any real config (the venueless format nests about six levels), far
# below what recursive code (copy.deepcopy, json.dumps, the admin) can walk.
MAX_JSON_DEPTH = 64
# Whole numbers in a JSON document: a signed 64-bit integer (PostgreSQL bigint).
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
# An IntegerField column: the range PostgreSQL's integer holds (SQLite holds more, but
# a config valid on SQLite must also import on PostgreSQL).
INTEGER_MIN, INTEGER_MAX = -(2**31), 2**31 - 1
# At most this many problems of one document are listed; then checking stops.
MAX_PROBLEMS = 50

_SURROGATE = re.compile("[\ud800-\udfff]")
# A JSON string, escapes included (the "unrolled loop" form: no backtracking).
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def text_problem(value: str, max_length: int | None = None) -> str | None:
    """Return what makes ``value`` unstorable text (NUL, lone surrogate, too long)."""
    if "\x00" in value:
        return "contains a NUL character (\\u0000); remove it"
    surrogate = _SURROGATE.search(value)
    if surrogate:
        return (
            f"contains a lone surrogate ({ascii(surrogate.group())[1:-1]}), which is "
            "not Unicode text; write the character itself, or its \\u escape pair"
        )
    if max_length is not None and len(value) > max_length:
        return f"is longer than {max_length} characters ({len(value)})"
    return None


def integer_problem(
    value: Any, minimum: int = BIGINT_MIN, maximum: int = BIGINT_MAX
) -> str | None:
    """Return why ``value`` is not a whole number from ``minimum`` to ``maximum``."""
    if not isinstance(value, int) or isinstance(value, bool):
        return f"must be a whole number from {minimum} to {maximum}"
    if not minimum <= value <= maximum:
        return f"is {value}; it must be from {minimum} to {maximum}"
    return None


def json_path(parent: str, key: str | int) -> str:
    """Return the JSON path of ``key`` inside ``parent``, printable whatever the key
    holds: ``$.rooms[0]``, ``$.world.title``, ``$.exhibitors["a b"]``."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    if _PLAIN_KEY.fullmatch(key):
        return f"{parent}.{key}"
    return f"{parent}[{json.dumps(key)}]"


def json_problems(
    data: Any, root: str = "$", max_depth: int = MAX_JSON_DEPTH
) -> list[tuple[str, str]]:
    """Return ``(json_path, message)`` for each value of ``data`` no edge may store.

    Walks without recursion, so a document nested 100,000 deep is answered (at the
    first level past ``max_depth``) like any other.
    """
    problems: list[tuple[str, str]] = []
    stack: list[tuple[str, Any, int]] = [(root, data, 1)]
    while stack and len(problems) < MAX_PROBLEMS:
        path, value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > max_depth:
                problems.append(
                    (
                        path,
                        f"is nested more than {max_depth} levels deep; flatten the "
                        "document",
                    )
                )
                continue
            items = value.items() if isinstance(value, dict) else enumerate(value)
            children = []
            for key, child in items:
                if isinstance(key, str):
                    problem = text_problem(key)
                    if problem:
                        problems.append((json_path(path, key), f"key {problem}"))
                elif not isinstance(key, int) or isinstance(value, dict):
                    problems.append((path, "has a key that is not a string"))
                    continue
                children.append((json_path(path, key), child, depth + 1))
            stack.extend(reversed(children))
        elif isinstance(value, str):
            problem = text_problem(value)
            if problem:
                problems.append((path, problem))
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            problem = integer_problem(value)
            if problem:
                problems.append((path, problem))
        elif isinstance(value, float):
            if not math.isfinite(value):
                problems.append(
                    (
                        path,
                        f"is {value}; JSON numbers must be finite (not NaN/Infinity)",
                    )
                )
            elif not BIGINT_MIN < value < BIGINT_MAX:
                # PostgreSQL gives 1e19 back as the whole number 10000000000000000000.
                problems.append(
                    (
                        path,
                        f"is {value:g}; it must be from {BIGINT_MIN} to {BIGINT_MAX}",
                    )
                )
        else:
            problems.append((path, f"is not a JSON value ({type(value).__name__})"))
    if stack:
        problems.append((root, f"(checking stopped after {MAX_PROBLEMS} problems)"))
    return problems


def load_json(text: str | bytes) -> Any:
    """Parse JSON text; nesting deeper than the parser can follow is a ValueError
    (not a RecursionError). NaN and Infinity parse, so that :func:`json_problems`
    can name where they are."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(
            f"it is nested more than {MAX_JSON_DEPTH} levels deep; flatten the document"
        ) from None


def json_depth(text: str | bytes) -> int:
    """Return how deeply arrays and objects nest in the JSON ``text``, without parsing.

    ``[]`` is 1, ``[{"a": []}]`` is 3, a scalar 0; brackets inside strings do not
    count. Text that is not JSON gets a number too (an unterminated string's brackets
    count), which is fine for its purpose: deciding whether to hand the text to
    ``json.loads`` at all.
    """
    if isinstance(text, bytes):
        # Brackets and quotes are ASCII: latin-1 keeps every byte where it is.
        text = text.decode("latin-1")
    depth = deepest = 0
    for bracket in _BRACKET.findall(_JSON_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest
