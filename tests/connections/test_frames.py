"""Hostile frames on the attendees' WebSocket: each refused with a precise error frame,
never a traceback or a socket closed without a close frame (apps/connections/frames.py).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.connections import frames
from apps.connections.models import ChatMessage
from apps.core.validation import json_depth, text_problem
from tests.fuzzing import (
    any_char,
    any_text,
    deeply_nested,
    dumps,
    fuzz,
    json_values,
    scalars,
)

from .communicators import TIMEOUT, ask, attendee, connect, scenario

DEEP = 60_000  # under the 64 KiB frame limit


async def still_usable(comm) -> None:
    assert await ask(comm, ["ping", "still?"]) == ["pong", "still?"]


@pytest.mark.parametrize(
    "text",
    [
        "[" * DEEP,
        "{" * DEEP,
        '["ping", ' + "[" * 5000 + "]" * 5000 + "]",
        '["room.enter", 1, {"room": ' + '{"a": ' * 3000 + "1" + "}" * 3000 + "}]",
        json.dumps(
            ["chat.send", 1, {"room": "hallway", "text": "x", "x": [[[[[[[]]]]]]]}]
        ),
    ],
)
def test_deep_nesting_is_refused_before_decoding(harbor_live, token, text):
    async def body():
        comm = await attendee(token())
        await comm.send_to(text_data=text)
        reply = await comm.receive_json_from(timeout=TIMEOUT)
        assert reply[0] == "error"
        assert reply[-1] == {
            "code": "protocol.invalid_frame",
            "message": "Arrays and objects may nest at most 8 deep.",
        }
        await still_usable(comm)
        await comm.disconnect()

    scenario(body)


def test_nesting_up_to_the_limit_is_fine(harbor_live, token):
    nested = [[[[[["deep"]]]]]]  # the frame, the payload and these six: 8
    frame = ["room.enter", 1, {"room": "hallway", "extra": nested}]

    async def body():
        comm = await attendee(token())
        assert await ask(comm, frame) == ["success", 1, {"room": "hallway"}]
        await comm.disconnect()

    scenario(body)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('["ping", NaN]', "NaN is not a number a frame may carry."),
        ('["ping", Infinity]', "Infinity is not a number a frame may carry."),
        ('["ping", -Infinity]', "-Infinity is not a number a frame may carry."),
        ('["ping", 1e400]', "The number 1e400 is too large."),
        ('["ping", 9223372036854775808]', "Integers must be within ±9007199254740991"),
        ('["ping", ' + "9" * 5000 + "]", "Integers must be within ±9007199254740991"),
        ('["room.enter", 9007199254740992, {"room": "hallway"}]', "Integers must"),
        ('["auth.accept_terms", {"terms": [18446744073709551616]}]', "Integers must"),
    ],
)
def test_numbers_must_be_finite_and_safe(harbor_live, token, text, message):
    async def body():
        comm = await connect()
        await comm.send_to(text_data=text)
        reply = await comm.receive_json_from(timeout=TIMEOUT)
        assert reply[0] == "error"
        assert reply[1]["code"] == "protocol.invalid_frame"
        assert reply[1]["message"].startswith(message)
        await still_usable(comm)
        await comm.disconnect()

    scenario(body)


@pytest.mark.parametrize(
    "text",
    ["nul\x00here", "lone \ud800 surrogate", "\udfff", "x" * 3999 + "\x00"],
)
def test_chat_text_the_database_refuses_never_reaches_it(harbor_live, token, text):
    async def body():
        comm = await attendee(token())
        assert (await ask(comm, ["room.enter", 1, {"room": "hallway"}]))[0] == "success"
        reply = await ask(comm, ["chat.send", 2, {"room": "hallway", "text": text}])
        assert reply[:2] == ["error", 2]
        assert reply[2]["code"] == "chat.invalid_text"
        assert reply[2]["message"].startswith("text contains a ")
        # The connection is fine and a good message still goes through.
        reply = await ask(comm, ["chat.send", 3, {"room": "hallway", "text": "ok"}])
        frames = [reply, await comm.receive_json_from(timeout=TIMEOUT)]
        assert any(f[:2] == ["success", 3] for f in frames)
        await comm.disconnect()

    scenario(body)
    assert list(ChatMessage.objects.values_list("text", flat=True)) == ["ok"]


@pytest.mark.parametrize(
    ("frame", "code", "message"),
    [
        (
            ["room.enter", 1, {"room": "r" * 101}],
            "protocol.invalid_frame",
            "room must be a room id: a non-empty string of at most 100 characters.",
        ),
        (
            ["room.enter", 1, {"room": "hall\x00way"}],
            "protocol.invalid_frame",
            "room contains a NUL character",
        ),
        (
            ["room.leave", 1, {"room": 5}],
            "protocol.invalid_frame",
            "room must be a room id: a non-empty string of at most 100 characters.",
        ),
        (
            ["chat.send", 1, {"room": "hallway", "text": "x" * 4001}],
            "chat.invalid_text",
            "text must be the message: a non-empty string of at most 4000 characters.",
        ),
        (
            ["room.enter", 1, {"room": "hallway", "note\x00": 1}],
            "protocol.invalid_frame",
            "a key of payload contains a NUL character",
        ),
        (
            ["room.enter", 1, {"room": "hallway", "deep": {"er": ["\ud800"]}}],
            "protocol.invalid_frame",
            "payload.deep.er[0] contains a lone surrogate",
        ),
    ],
)
def test_payload_fields_within_the_models_limits(
    harbor_live, token, frame, code, message
):
    async def body():
        comm = await attendee(token())
        reply = await ask(comm, frame)
        assert reply[:2] == ["error", 1]
        assert reply[2]["code"] == code
        assert reply[2]["message"].startswith(message)
        await still_usable(comm)
        await comm.disconnect()

    scenario(body)


@pytest.mark.parametrize(
    "frame",
    [
        ["room.enter", "i" * 101, {"room": "hallway"}],
        ["room.enter", "id\x00", {"room": "hallway"}],
        ["room.enter", [1], {"room": "hallway"}],
        ["room.enter", True, {"room": "hallway"}],
        ["ping", {"ts": 1}],
        ["ping", 1, 2],
        ["a" * 65, 1, {}],
        ["", 1, {}],
    ],
)
def test_ids_and_actions_are_bounded(harbor_live, token, frame):
    async def body():
        comm = await attendee(token())
        reply = await ask(comm, frame)
        assert reply[0] == "error"
        assert len(reply) == 2  # no id echoed that is not a valid one
        assert reply[1]["code"] == "protocol.invalid_frame"
        await still_usable(comm)
        await comm.disconnect()

    scenario(body)


def test_string_ids_are_echoed(harbor_live, token):
    async def body():
        comm = await attendee(token())
        assert await ask(comm, ["room.enter", "a-1", {"room": "hallway"}]) == [
            "success",
            "a-1",
            {"room": "hallway"},
        ]
        await comm.disconnect()

    scenario(body)


def test_a_lone_surrogate_in_a_frame_counts_towards_its_size(harbor_live, settings):
    settings.CONNECTIONS_MAX_FRAME_BYTES = 100

    async def body():
        comm = await connect()
        await comm.send_to(text_data='["ping", "' + "\ud800" * 40 + '"]')
        reply = await comm.receive_json_from(timeout=TIMEOUT)
        assert reply[1]["code"] == "protocol.frame_too_large"
        closed = await comm.receive_output(timeout=TIMEOUT)
        assert closed == {"type": "websocket.close", "code": 1009}

    scenario(body)


@pytest.mark.parametrize(
    "text",
    [
        "\ud800",
        "a\x00b",
        "eyJ\ud83d",
        "x" * 60_000,
        "é.é.é",
        "[" * 50,
    ],
)
def test_hostile_tokens_are_invalid_and_the_connection_stays(harbor_live, token, text):
    async def body():
        comm = await connect()
        reply = await ask(comm, ["authenticate", {"token": text}])
        assert reply[0] == "error"
        assert reply[1]["code"] == "auth.invalid_token"
        await still_usable(comm)
        assert (await ask(comm, ["authenticate", {"token": token()}]))[0] == (
            "authenticated"
        )
        await comm.disconnect()

    scenario(body)


# Properties: whatever arrives, a Frame or a documented FrameError ------------------

MAX_BYTES = 65536  # the default CONNECTIONS_MAX_FRAME_BYTES
DOCUMENTED = {"protocol.invalid_frame", "protocol.frame_too_large", "chat.invalid_text"}
ACTIONS = ["ping", "authenticate", "auth.accept_terms", *frames.PAYLOADS, "x.y"]


def parsed_or_refused(text: str | None, bytes_data: bytes | None = None):
    """Parse as the consumer does; return the Frame, or the FrameError's code."""
    try:
        frame = frames.parse(text, bytes_data, MAX_BYTES)
    except frames.FrameError as exc:
        assert exc.code in DOCUMENTED
        assert isinstance(exc.message, str) and exc.message
        return exc.code
    assert isinstance(frame, frames.Frame)
    # What passed is safe to store and to send on: re-encodable, bounded, and no
    # NUL or lone surrogate anywhere (but in the token, which verify_token checks).
    checked = dict(frame.payload)
    if frame.action == "authenticate":
        checked.pop("token", None)
    value = [frame.action, frame.id, checked]
    assert json_depth(json.dumps(value, allow_nan=False)) <= frames.MAX_DEPTH
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            assert text_problem(item) is None, item
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend([*item, *item.values()])
        elif isinstance(item, int):
            assert abs(item) <= frames.MAX_SAFE_INTEGER
    return frame


@fuzz
@given(st.text(any_char, max_size=300))
def test_fuzz_any_text(text):
    parsed_or_refused(text)


@fuzz
@given(st.binary(max_size=300))
def test_fuzz_any_bytes(data):
    assert parsed_or_refused(None, data) == "protocol.invalid_frame"


@fuzz
@given(deeply_nested())
def test_fuzz_any_nesting(text):
    parsed_or_refused(text)


@fuzz
@given(
    st.sampled_from(ACTIONS),
    scalars,
    st.one_of(
        json_values,
        st.fixed_dictionaries(
            {
                "room": any_text,
                "text": any_text,
                "token": any_text,
                "terms": json_values,
            }
        ),
    ),
    st.integers(1, 4),
)
def test_fuzz_frames_of_every_action(action, frame_id, payload, length):
    frame = [action, frame_id, payload][:length] + [payload] * (length - 3)
    if action in frames.WITHOUT_ID and length == 3:
        frame = [action, payload]
    parsed_or_refused(dumps(frame))


@fuzz
@given(
    st.sampled_from(
        [
            '["chat.send", 1, {"room": "hallway", "text": "hi"}]',
            '["authenticate", {"token": "a.b.c"}]',
            '["ping", 5]',
        ]
    ),
    st.integers(0, 60),
    st.text(
        st.sampled_from('[]{}",:\\0123456789eE.-+ntrufalsNIy\x00\ud800'), max_size=8
    ),
)
def test_fuzz_mutated_frames(valid, at, insert):
    parsed_or_refused(valid[:at] + insert + valid[at:])


@fuzz
@given(
    st.sampled_from(ACTIONS),
    scalars,
    st.dictionaries(
        st.sampled_from(["room", "text", "token", "terms", "other"]), json_values
    ),
)
def test_fuzz_well_shaped_frames_with_hostile_values(action, frame_id, payload):
    if action == "ping":
        frame = [action, frame_id]
    elif action in frames.WITHOUT_ID:
        frame = [action, payload]
    else:
        frame = [action, frame_id, payload]
    parsed_or_refused(dumps(frame))
