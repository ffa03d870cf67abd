"""Hypothesis settings and strategies for the property tests of parsers and validators.

CI runs a modest number of examples per property (``FUZZ_EXAMPLES``, 100 by
default), which takes seconds; a release runs many more:
``FUZZ_EXAMPLES=20000 python -m pytest -k fuzz`` (docs/connections.md). No example
database is written into the checkout.
"""

from __future__ import annotations

import json
import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))

fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# The classic hostile values beside whatever Hypothesis draws.
HOSTILE_TEXT = [
    "",
    "\x00",
    "\ud800",
    "\udfff",
    "\ud83d",
    "x" * 201,
    "x" * 4001,
    "\u202e",
    "'; DROP TABLE x; --",
]
HOSTILE_NUMBERS = [
    2**31,
    2**53,
    2**63,
    -(2**63) - 1,
    10**9,
    10**30,
    float("inf"),
    float("-inf"),
    float("nan"),
    1e308,
    -0.0,
    True,
]

# Every code point, lone surrogates and NUL included.
any_char = st.characters(codec=None, exclude_categories=())
# Random text rarely holds a lone surrogate: some examples get one on purpose.
any_text = st.one_of(
    st.sampled_from(HOSTILE_TEXT),
    st.builds(
        lambda before, bad, after: before + bad + after,
        st.text(any_char, max_size=20),
        st.sampled_from(["\x00", "\ud800", "\udfff", "\ud83d"]),
        st.text(any_char, max_size=20),
    ),
    st.text(any_char, max_size=50),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(HOSTILE_NUMBERS),
    any_text,
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(any_text, children, max_size=5),
    ),
    max_leaves=30,
)


@st.composite
def deeply_nested(draw) -> str:
    """``[[[[…`` or ``{"a": {"a": …`` of any depth up to 70,000, closed or not."""
    depth = draw(st.integers(0, 70_000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a": ', "}")]))
    tail = "1" + closer * depth if draw(st.booleans()) else ""
    return opener * depth + tail


def dumps(value) -> str:
    """JSON text as a hostile client writes it: NaN, Infinity and escapes allowed."""
    return json.dumps(value, ensure_ascii=True)
