"""Django's common options after a subcommand: `cache flush -v 2`, `jobs list --no-color`.

Every command with subcommands creates them through apps.core.subcommands, so each of
its subcommands is listed here; a command that bypassed the helper would fail here.
"""

from __future__ import annotations

import json
import os

import pytest
from django.core.cache import cache
from django.core.management import CommandError, load_command_class

from tests.helpers import call

pytestmark = pytest.mark.django_db

COMMON = [
    "-v",
    "2",
    "--traceback",
    "--no-color",
    "--settings",
    "config.settings.test",
    "--pythonpath",
    ".",
]

# (app, command, the subcommand with its required arguments)
SUBCOMMANDS = [
    ("apps.jobs", "cache", ["flush"]),
    ("apps.jobs", "jobs", ["list"]),
    ("apps.jobs", "jobs", ["run", "log-test"]),
    ("apps.jobs", "jobs", ["schedule", "@daily", "log-test"]),
    ("apps.jobs", "jobs", ["unschedule", "log-test"]),
    ("apps.jobs", "jobs", ["scheduled"]),
    ("apps.jobs", "jobs", ["history"]),
    ("apps.jobs", "worker", ["status"]),
    ("apps.connections", "connections", ["list"]),
    ("apps.connections", "connections", ["drop", "abc.*"]),
    ("apps.connections", "connections", ["force_reload", "abc.*"]),
    ("apps.search", "search", ["index"]),
    ("apps.search", "search", ["query", "text"]),
    ("apps.search", "search", ["status"]),
    ("apps.ops", "backend", ["processes"]),
    ("apps.ops", "backend", ["stop"]),
    ("apps.ops", "backend", ["kill"]),
]

IDS = [" ".join([name, *argv]) for _, name, argv in SUBCOMMANDS]


@pytest.mark.parametrize(("app", "name", "argv"), SUBCOMMANDS, ids=IDS)
def test_every_subcommand_takes_the_common_options(app, name, argv):
    parser = load_command_class(app, name).create_parser("manage.py", name)
    options = vars(parser.parse_args([*argv, *COMMON, "--force-color"]))
    assert options["verbosity"] == 2
    assert options["traceback"] is options["no_color"] is options["force_color"] is True
    assert options["settings"] == "config.settings.test"
    assert options["pythonpath"] == "."


@pytest.mark.parametrize(("app", "name", "argv"), SUBCOMMANDS, ids=IDS)
def test_options_before_the_subcommand_are_kept(app, name, argv):
    parser = load_command_class(app, name).create_parser("manage.py", name)
    options = vars(parser.parse_args(["-v", "3", "--no-color", *argv]))
    assert options["verbosity"] == 3 and options["no_color"] is True
    assert options["traceback"] is False and options["force_color"] is False
    # ...and one given after the subcommand wins over one given before it
    options = vars(parser.parse_args(["-v", "3", *argv, "-v", "0"]))
    assert options["verbosity"] == 0


@pytest.mark.redis
def test_cache_flush_v2_as_docs_jobs_md_documents_it():
    cache.set("greeting", "hello")
    assert call("cache", "flush", "-v", "2").splitlines() == [
        "1 key deleted",
        "✔ Cache flushed",
    ]
    assert "keys deleted" not in call("cache", "flush", "-v", "1")
    assert "0 keys deleted" in call("cache", "-v", "2", "flush")


def test_no_color_and_force_color_after_the_subcommand():
    assert "\x1b[" in call("cache", "flush", "--force-color")
    assert "\x1b[" not in call("cache", "flush", "--no-color")
    with pytest.raises(CommandError, match="--no-color and --force-color"):
        call("cache", "flush", "--no-color", "--force-color")


def test_jobs_subcommands_run_with_common_options():
    assert "log-test" in call("jobs", "list", "-v", "0", "--no-color")
    assert json.loads(call("jobs", "scheduled", "--json", "-v", "2")) is not None
    assert json.loads(call("jobs", "history", "--json", "--traceback")) == []


def test_backend_processes_with_common_options():
    assert json.loads(call("backend", "processes", "--json", "-v", "2")) == []


@pytest.mark.postgres
def test_search_status_with_common_options():
    assert isinstance(json.loads(call("search", "status", "--json", "-v", "2")), list)


@pytest.mark.redis
def test_connections_list_with_common_options():
    assert isinstance(
        json.loads(call("connections", "list", "--json", "-v", "2")), list
    )


@pytest.mark.rabbitmq
def test_worker_status_with_common_options():
    broker = os.environ["RABBITMQ_URL"]
    rows = json.loads(call("worker", "status", "-b", broker, "--json", "-v", "2"))
    assert isinstance(rows, list)
