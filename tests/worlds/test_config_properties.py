"""Hypothesis against the config validator: random and adversarial documents give a
list of problems or an import that export gives back, never an unexpected exception.

CI runs a small, fixed corpus (``derandomize``); before a release run a longer one:
``STAGEHAND_FUZZ_EXAMPLES=20000 pytest tests/worlds/test_config_properties.py``.
"""

from __future__ import annotations

import copy
import json
import os

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.worlds import services
from tests.personas import EXAMPLE_CONFIG

EXAMPLES = int(os.environ.get("STAGEHAND_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same documents in every CI run
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

HOSTILE_TEXT = st.sampled_from(
    ["", "\x00", "a\x00b", "\ud800", "\udfff", "x\n", " ", "x" * 301, "é", "𝄞"]
)
# Any code point, lone surrogates included (Hypothesis leaves those out by default).
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=20) | HOSTILE_TEXT
NUMBERS = (
    st.integers()
    | st.sampled_from([2**31 - 1, 2**31, -(2**31) - 1, 2**40, 2**63, -(2**63) - 1])
    | st.floats(allow_nan=True, allow_infinity=True)
)
SCALARS = st.none() | st.booleans() | NUMBERS | ANY_TEXT
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4)
    ),
    max_leaves=20,
)


def nested(depth: int, leaf=0):
    value = leaf
    for _ in range(depth):
        value = {"x": value} if depth % 2 else [value]
    return value


DEEP = st.builds(nested, st.integers(0, 3 * services.MAX_CONFIG_DEPTH), SCALARS)
EXAMPLE = json.loads(EXAMPLE_CONFIG.read_text())
# Where an attacker puts a value: every part the validator knows, and beyond.
PLACES = [
    ("world", "id"),
    ("world", "title"),
    ("world", "domain"),
    ("world", "locale"),
    ("world", "timezone"),
    ("world", "connection_limit"),
    ("world", "JWT_secrets"),
    ("world", "profile_fields"),
    ("world", "anything"),
    ("roles",),
    ("roles", "attendee"),
    ("trait_grants", "participant"),
    ("rooms",),
    ("rooms", 0),
    ("rooms", 0, "id"),
    ("rooms", 0, "name"),
    ("rooms", 0, "description"),
    ("rooms", 0, "sorting_priority"),
    ("rooms", 0, "trait_grants"),
    ("rooms", 1, "modules"),
    ("rooms", 1, "modules", 0, "config"),
    ("rooms", 1, "picture"),
    ("exhibitors",),
    ("polls",),
    ("nonsense",),
]


def replaced(place: tuple, value) -> dict:
    data = copy.deepcopy(EXAMPLE)
    target = data
    for step in place[:-1]:
        target = target[step]
    target[place[-1]] = value
    return data


ADVERSARIAL = st.builds(
    replaced, st.sampled_from(PLACES), JSON_VALUES | DEEP | HOSTILE_TEXT | NUMBERS
)


def check_problems(problems) -> None:
    assert isinstance(problems, list)
    for path, message in problems:
        assert isinstance(path, str) and path.startswith("$")
        assert isinstance(message, str) and message
        # Printable on any terminal: nothing hostile is copied into the report.
        (path + message).encode("utf-8")
        assert "\x00" not in path + message


def check_import_round_trip(data) -> None:
    """An accepted document imports, and its export imports again unchanged."""
    with transaction.atomic():
        try:
            world = services.import_config(data).world
        except services.ConfigError as exc:
            # Only what needs the database: a domain another world already has.
            assert [p for p, _ in exc.problems] == ["$.world.domain"]
            return
        exported = services.export_config(world)
        text = json.dumps(exported, indent=2, ensure_ascii=False)
        again = services.import_config(services.parse_config(text)).world
        assert services.export_config(again) == exported
        transaction.set_rollback(True)


@pytest.mark.django_db
@FUZZ
@given(data=JSON_VALUES | DEEP)
def test_any_json_value_gives_problems_or_imports(data):
    problems = services.validate_config(data)
    check_problems(problems)
    if not problems:
        check_import_round_trip(data)


@pytest.mark.django_db
@FUZZ
@given(data=ADVERSARIAL)
def test_an_example_config_with_a_hostile_part_gives_problems_or_imports(data):
    problems = services.validate_config(data)
    check_problems(problems)
    if not problems:
        check_import_round_trip(data)


@FUZZ
@given(
    text=st.text(st.characters(exclude_categories=()), max_size=200)
    | st.builds(lambda n: "[" * n + "]" * n, st.integers(0, 200_000))
    | st.builds(json.dumps, ADVERSARIAL)
)
def test_any_text_parses_to_a_config_or_a_config_error(text):
    try:
        data = services.parse_config(text)
    except services.ConfigError as exc:
        check_problems(exc.problems)
    else:
        assert services.validate_config(data) == []
