"""The API's JSON parser: every body is either data that meets apps.core.validation's
rules or a ParseError (a 400), never another exception.

CI runs a small fixed corpus; before a release:
``STAGEHAND_FUZZ_EXAMPLES=20000 pytest tests/core/test_api_parser.py``.
"""

from __future__ import annotations

import io
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ParseError

from apps.core.parsers import JSONParser
from apps.core.validation import MAX_JSON_DEPTH, json_problems

FUZZ = settings(
    max_examples=int(os.environ.get("STAGEHAND_FUZZ_EXAMPLES", "300")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

TEXT = st.text(st.characters(exclude_categories=()), max_size=30) | st.sampled_from(
    ["\x00", "\ud800", "x" * 1000]
)
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | TEXT,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4)
    ),
    max_leaves=25,
)


def deep(depth: int, opener: str = "[", closer: str = "]") -> bytes:
    return (opener * depth + closer * depth).encode()


def as_body(value) -> bytes:
    # json.dumps writes NaN/Infinity as JavaScript does and lone surrogates escaped.
    return json.dumps(value).encode()


BODIES = (
    st.builds(as_body, VALUES)
    | st.binary(max_size=200)
    | st.builds(deep, st.integers(0, 200_000))
    | st.builds(lambda n: b'{"a":' * n + b"1" + b"}" * n, st.integers(0, 5_000))
)


def parse(body: bytes):
    return JSONParser().parse(io.BytesIO(body), "application/json", {})


@FUZZ
@given(body=BODIES)
def test_any_body_is_valid_data_or_a_parse_error(body):
    try:
        data = parse(body)
    except ParseError as exc:
        assert str(exc.detail)
    else:
        assert json_problems(data) == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (deep(MAX_JSON_DEPTH + 1), "nested more than 64 levels deep"),
        (deep(100_000), "nested more than 64 levels deep"),
        (b'{"a": "\\u0000"}', "$.a: contains a NUL character"),
        (b'["\\ud800"]', "$[0]: contains a lone surrogate"),
        (b'{"n": 9223372036854775808}', "$.n: is 9223372036854775808"),
        (b'{"n": NaN}', "JSON parse error"),
    ],
)
def test_what_the_parser_refuses(body, expected):
    with pytest.raises(ParseError) as info:
        parse(body)
    assert expected in str(info.value.detail)


def test_the_deepest_body_allowed_parses():
    assert parse(deep(MAX_JSON_DEPTH)) is not None
