"""The ID/title/domain options and prompts shared by create_world and clone_world."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.core.output import add_noinput_argument
from apps.worlds import services

PROMPTS = (
    # (option, question, check returning a problem or None)
    (
        "world_id",
        "Internal ID for the new world (alphanumeric): ",
        services.new_world_id_problem,
    ),
    (
        "title",
        "Title of the new world: ",
        services.check_title,
    ),
    (
        "domain",
        "Domain of the new world (e.g. events.example.org): ",
        lambda v: services.new_domain_problem(services.normalize_domain(v)),
    ),
)


def add_world_options(parser: Any) -> None:
    parser.add_argument("--id", dest="world_id", help="internal ID: a-z and 0-9 only")
    parser.add_argument("--title", help="the world's title")
    parser.add_argument(
        "--domain", help="host name attendees open, e.g. events.example.org"
    )
    add_noinput_argument(
        parser, help="ask nothing; --id, --title and --domain are then required"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the new world as JSON (as the API answers); questions go to stderr",
    )


def world_values(
    command: BaseCommand, options: dict[str, Any], *, json: bool = False
) -> dict[str, str]:
    """Return id, title and domain from the options, asking for missing ones unless
    --noinput. A bad answer is explained and asked again.

    With --json the questions go to stderr, so that stdout carries only the JSON."""
    values = {key: (options.get(key) or "").strip() for key, _, _ in PROMPTS}
    if not options["interactive"]:
        missing = [
            f"--{k.replace('world_id', 'id')}" for k, v in values.items() if not v
        ]
        if missing:
            raise CommandError(
                f"--noinput needs {', '.join(missing)}; give them, or drop --noinput "
                "to be asked."
            )
        return values
    stdin = options.get("stdin") or sys.stdin
    prompts = command.stderr if json else command.stdout
    for key, question, check in PROMPTS:
        if values[key]:
            continue
        values[key] = _ask(command, stdin, prompts, question, check)
    return values


def _ask(
    command: BaseCommand,
    stdin: Any,
    prompts: Any,
    question: str,
    check: Callable[[str], Any],
) -> str:
    while True:
        # style_func=str: a question on stderr is not an error, so not in red.
        prompts.write(question, style_func=str, ending="")
        prompts.flush()
        line = stdin.readline()
        if not getattr(stdin, "isatty", lambda: False)():
            # Piped answers are not echoed; end the prompt's line ourselves.
            prompts.write("", style_func=str)
        if not line:
            raise CommandError(
                "No answer (end of input); run with --noinput --id ID --title TITLE "
                "--domain DOMAIN instead."
            )
        answer = line.strip()
        problem = check(answer)
        if problem is None:
            return answer
        command.stderr.write(problem)
