"""connections list|drop|force_reload against Redis, with channels made in this process.

The cross-process behaviour, with real server processes, is in test_live.py.
"""

from __future__ import annotations

import copy
import json
import re
import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.connections import services
from apps.connections.registry import label_key
from config.settings.base import redis_channel_layers
from tests.helpers import call

from .helpers import inbox, open_channels


@pytest.mark.redis
def test_list_counts_per_label_biggest_first(registry):
    open_channels(registry, {"abc123.production": 2, "def456.production": 3})

    out = call("connections", "list")

    lines = out.splitlines()
    assert lines[0].split("  ")[0] == "label"
    assert "est. number of connections" in lines[0]
    assert lines[1].split() == ["def456.production", "3"]
    assert lines[2].split() == ["abc123.production", "2"]
    # Aligned: the count column starts at the same place on every row.
    assert lines[1].rindex("3") == lines[2].rindex("2") == lines[0].index("est.")
    assert lines[-1] == "5 connections in 2 labels"


@pytest.mark.redis
def test_list_says_one_label_and_one_connection(registry):
    open_channels(registry, {"abc123.production": 1})
    assert call("connections", "list").splitlines()[-1] == "1 connection in 1 label"


@pytest.mark.redis
def test_list_json(registry):
    open_channels(registry, {"abc123.production": 1})

    data = json.loads(call("connections", "list", "--json"))

    assert data == [{"label": "abc123.production", "connections": 1}]


@pytest.mark.redis
def test_stale_members_age_out_and_are_trimmed(registry, settings):
    opened = open_channels(registry, {"abc123.production": 2})
    stale = opened["abc123.production"][0]
    # A heartbeat older than the window, as a crashed process leaves behind.
    client = registry._client()
    old = time.time() - settings.CONNECTIONS_HEARTBEAT_WINDOW - 5
    client.zadd(label_key("abc123.production"), {stale: old})

    assert json.loads(call("connections", "list", "--json")) == [
        {"label": "abc123.production", "connections": 1}
    ]
    assert client.zscore(label_key("abc123.production"), stale) is None


@pytest.mark.redis
def test_drop_reaches_matching_labels_only(registry, processes):
    opened = open_channels(registry, {"abc123.production": 2, "def456.production": 1})
    abc = processes.join("abc123.production")
    other = processes.join("def456.production")

    out = call("connections", "drop", "abc*")

    assert out.splitlines()[-1] == "Dropped 2 connections (labels: abc123.production)"
    # The label's server processes are told; they close their own connections.
    got = inbox([abc, other] + opened["abc123.production"])
    assert got[abc] == [{"type": "connections.drop", "label": "abc123.production"}]
    assert got[other] == []
    for channel in opened["abc123.production"]:
        assert got[channel] == []
    assert json.loads(call("connections", "list", "--json")) == [
        {"label": "def456.production", "connections": 1}
    ]


@pytest.mark.redis
def test_drop_defaults_to_every_label(registry):
    open_channels(registry, {"abc123.production": 1, "def456.staging": 1})

    out = call("connections", "drop")

    assert out.splitlines()[-1] == (
        "Dropped 2 connections (labels: abc123.production, def456.staging)"
    )


@pytest.mark.redis
def test_several_globs_with_interval(registry):
    opened = open_channels(
        registry, {"abc123.production": 2, "def456.staging": 1, "fff000.test": 1}
    )

    out = call("connections", "force_reload", "--interval", "20", "abc*", "*.staging")

    assert out.splitlines()[-1] == (
        "Reloaded 3 connections (labels: abc123.production, def456.staging)"
    )
    got = inbox([c for channels in opened.values() for c in channels])
    for label in ("abc123.production", "def456.staging"):
        for channel in opened[label]:
            assert got[channel] == [{"type": "connections.reload"}]
    assert got[opened["fff000.test"][0]] == []


@pytest.mark.redis
def test_dry_run_sends_nothing(registry):
    opened = open_channels(registry, {"abc123.production": 2})

    out = call("connections", "drop", "--dry-run")

    assert out.splitlines() == [
        "abc123.production: 2",
        "Would drop 2 connections (labels: abc123.production)",
    ]
    assert inbox(opened["abc123.production"]) == {
        c: [] for c in opened["abc123.production"]
    }


@pytest.mark.redis
def test_nobody_connected_and_no_glob_given_is_no_error(registry):
    out = call("connections", "drop")

    assert out.splitlines()[-1] == "Dropped 0 connections (labels: none)"


@pytest.mark.redis
@pytest.mark.parametrize("action", ["drop", "force_reload"])
@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_a_glob_that_matches_nothing_is_an_error_and_sends_nothing(
    registry, action, dry_run
):
    opened = open_channels(registry, {"abc123.production": 1})

    with pytest.raises(
        CommandError,
        match=r"^The label glob 'zzz\*' matches no live connection; nothing was sent\. "
        r"`manage\.py connections list` shows the labels",
    ) as info:
        call("connections", action, *dry_run, "zzz*")
    assert info.value.returncode != 0
    with pytest.raises(
        CommandError, match=r"^The label globs 'zzz\*', '\*\.staging' match no live"
    ):
        call("connections", action, *dry_run, "abc*", "zzz*", "*.staging")
    # nothing half-applied: the glob that matched was not sent to either
    assert inbox(opened["abc123.production"]) == {opened["abc123.production"][0]: []}


@pytest.mark.redis
def test_negative_interval_is_refused(registry):
    with pytest.raises(CommandError, match="zero or more milliseconds"):
        call("connections", "drop", "--interval", "-5")


@pytest.mark.parametrize(
    "args", [["list"], ["drop"], ["force_reload", "--interval", "50", "abc*"]]
)
def test_in_memory_layer_is_refused(in_memory_layer, args):
    with pytest.raises(CommandError, match=r"in-memory.*set REDIS_URL"):
        call("connections", *args)


@pytest.mark.redis
def test_without_interval_each_process_gets_one_message(registry, processes):
    # 600 connections served by two processes: two messages, not 600 (each
    # process's hub closes its own; test_live.py shows that with real servers).
    opened = open_channels(registry, {"abc123.production": 600})
    first, second = (
        processes.join("abc123.production"),
        processes.join("abc123.production"),
    )

    out = call("connections", "force_reload", "abc123.*")

    assert out.splitlines()[-1] == (
        "Reloaded 600 connections (labels: abc123.production)"
    )
    got = inbox([first, second] + opened["abc123.production"])
    message = {"type": "connections.reload", "label": "abc123.production"}
    assert got[first] == got[second] == [message]
    assert all(got[c] == [] for c in opened["abc123.production"])
    assert json.loads(call("connections", "list", "--json")) == []


@pytest.mark.redis
def test_connections_of_a_process_that_does_not_read_are_unreachable(
    registry, monkeypatch, settings
):
    monkeypatch.setattr(services, "FULL_PATIENCE", 0.1)
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    layers["default"]["CONFIG"]["channel_capacity"] = {"specific.*": 100}
    settings.CHANNEL_LAYERS = layers
    # Nobody reads these: their process's inbox fills up at the layer's capacity.
    open_channels(registry, {"abc123.production": 150})
    out, err = StringIO(), StringIO()

    call_command("connections", "drop", "--interval", "1", stdout=out, stderr=err)

    assert out.getvalue().splitlines()[-1] == (
        "Dropped 100 connections (labels: abc123.production)"
    )
    assert err.getvalue().startswith("50 connections could not be reached")


class Terminal(StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.redis
def test_interval_shows_a_progress_bar_on_a_terminal(registry):
    open_channels(registry, {"abc123.production": 3})
    out = Terminal()

    call_command("connections", "force_reload", "--interval", "1", stdout=out)

    # tqdm's bar (apps.core.output.Progress): the count against the total, and a rate.
    text = out.getvalue()
    assert "\rreloading:   0%|" in text and " 0/3 [" in text
    assert re.search(
        r"\rreloading: 100%\|#+\| 3/3 \[[\d:]+<[\d:]+, +[\d.]+it/s\]", text
    )
    assert text.endswith("Reloaded 3 connections (labels: abc123.production)\n")


@pytest.mark.redis
def test_no_progress_bar_when_not_a_terminal(registry):
    open_channels(registry, {"abc123.production": 3})

    out = call("connections", "force_reload", "--interval", "1")

    # Off a terminal, one summary line with the duration instead of a bar.
    assert "\r" not in out
    summary, last = out.splitlines()
    assert re.fullmatch(r"reloading: 3 of 3 in [\d.]+ m?s \([\d,]+/s\)", summary)
    assert last == "Reloaded 3 connections (labels: abc123.production)"


@pytest.mark.redis
@pytest.mark.parametrize("spelling", ["--interval-ms", "--interval"])
def test_interval_ms_is_spelled_out_and_the_old_spelling_still_works(
    registry, spelling
):
    opened = open_channels(registry, {"abc123.production": 2})

    out = call("connections", "drop", spelling, "1")

    assert out.splitlines()[-1] == "Dropped 2 connections (labels: abc123.production)"
    got = inbox(opened["abc123.production"])
    assert all(messages == [{"type": "connections.drop"}] for messages in got.values())


@pytest.mark.redis
@pytest.mark.parametrize("action", ["drop", "force_reload"])
def test_json_result_for_scripts(registry, processes, action):
    open_channels(registry, {"abc123.production": 2, "def456.production": 1})
    processes.join("abc123.production")

    dry = json.loads(call("connections", action, "--json", "--dry-run", "abc*"))
    done = json.loads(call("connections", action, "--json", "abc*"))

    assert dry == {
        "count": 2,
        "labels": ["abc123.production"],
        "unreachable": 0,
        "dry_run": True,
    }
    assert done == {**dry, "dry_run": False}
    assert json.loads(call("connections", "list", "--json")) == [
        {"label": "def456.production", "connections": 1}
    ]


@pytest.mark.parametrize("args", [["list"], ["drop"], ["force_reload", "abc*"]])
def test_redis_unreachable_is_a_command_error_that_says_what_to_do(settings, args):
    # Nothing listens on port 1.
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.CHANNEL_LAYERS = redis_channel_layers(settings.REDIS_URL)

    with pytest.raises(CommandError) as info:
        call("connections", *args)

    message = str(info.value)
    assert message.startswith("Redis at redis://127.0.0.1:1/0 does not answer")
    assert "nothing was sent" in message and "try again then" in message
