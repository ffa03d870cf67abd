"""Rules for text and JSON that arrive from outside: checked before they are used.

PostgreSQL refuses a NUL character in text and in ``jsonb``, and no encoder writes a
lone surrogate (``"\\ud800"`` in JSON decodes to one); either, reaching a query,
raises instead of being stored. A JSON document nested thousands deep makes Python's
decoder raise ``RecursionError``. These functions find both without recursing, so
that every edge can refuse such input with a message of its own.
"""

from __future__ import annotations

import re

# A JSON string, escapes included (the "unrolled loop" form: no backtracking).
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def text_problem(text: str) -> str | None:
    """Return why ``text`` cannot be stored or sent on (a NUL, a lone surrogate).

    The answer completes a sentence about the text ("… contains a NUL character");
    None when the text is fine.
    """
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (an unpaired \\ud800-\\udfff)"
    return None


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
