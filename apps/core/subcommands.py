"""Subcommands (``cache flush``, ``jobs schedule``, …) that accept Django's common options.

argparse gives the options of ``manage.py COMMAND`` only before the subcommand, so
``cache flush -v 2`` (the order people type) was refused with "unrecognized arguments".
Every command with subcommands creates them through ``add_subcommands``: each subcommand's
parser then knows the common options too, with ``SUPPRESS`` defaults so that a value given
before the subcommand is kept when the subcommand does not repeat it.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import CommandParser


class SubcommandParser(CommandParser):
    """A subcommand's parser: it also takes ``-v``, ``--settings``, ``--pythonpath``,
    ``--traceback``, ``--no-color`` and ``--force-color``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        common = self.add_argument_group("common options")
        common.add_argument(
            "-v",
            "--verbosity",
            type=int,
            choices=[0, 1, 2, 3],
            default=argparse.SUPPRESS,
            help="0 minimal, 1 normal, 2 verbose, 3 very verbose output",
        )
        for flag, help_text in (
            ("--settings", "a Python path to a settings module"),
            ("--pythonpath", "a directory to add to the Python path"),
        ):
            common.add_argument(flag, default=argparse.SUPPRESS, help=help_text)
        for flag, help_text in (
            ("--traceback", "raise on CommandError exceptions"),
            ("--no-color", "do not colorize the command output"),
            ("--force-color", "force colorization of the command output"),
        ):
            common.add_argument(
                flag, action="store_true", default=argparse.SUPPRESS, help=help_text
            )


def add_subcommands(parser: CommandParser) -> argparse._SubParsersAction:
    """Return ``parser``'s required subcommands (chosen one in ``options["action"]``),
    each of which accepts Django's common options after its name."""
    return parser.add_subparsers(
        dest="action", required=True, parser_class=SubcommandParser
    )
