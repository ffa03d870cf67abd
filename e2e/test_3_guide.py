"""Every command docs/deploy.md shows was run by this compose test.

Runs last (file order): the commands of test_1_production and test_2_local are
recorded as an operator types them. A guide command is covered when a recorded command
starts with it, word by word, where a guide word in angle brackets (``<world>``)
stands for any word. A code block preceded by ``<!-- not run by the compose test: WHY
-->`` is host preparation the test cannot do (installing Docker, systemd) and is
left out, with its reason in the guide.
"""

from __future__ import annotations

import re
import shlex

from e2e.stack import ROOT, RUN_COMMANDS

SKIP = re.compile(r"<!-- not run by the compose test: .+ -->")


def guide_commands() -> list[str]:
    text = (ROOT / "docs/deploy.md").read_text()
    commands, skip_next = [], False
    for block in re.split(r"(```sh\n.*?```)", text, flags=re.S):
        if not block.startswith("```sh"):
            skip_next = bool(
                SKIP.search(block.strip().splitlines()[-1] if block.strip() else "")
            )
            continue
        if skip_next:
            continue
        body = block.removeprefix("```sh\n").removesuffix("```")
        for line in body.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def words(command: str) -> list[str]:
    """The command's words, without leading VAR=value and without exec's -T."""
    # STAGEHAND_COMMIT=$(git rev-parse --short HEAD) docker compose …
    command = re.sub(r"^(?:[A-Z_]+=(?:\$\([^)]*\)|\S*)\s+)+", "", command)
    command = command.split(" < ")[0]  # … /dev/stdin < terms.md
    return [word for word in shlex.split(command) if word != "-T"]


def pattern(word: str) -> str:
    """A guide word as a pattern: ``<old commit>.*`` matches ``e2e0001.*``."""
    return ".+".join(re.escape(part) for part in re.split(r"<[^>]+>", word))


def covered(command: str, run: list[list[str]]) -> bool:
    wanted = words(command)
    return any(
        len(ran) >= len(wanted)
        and all(re.fullmatch(pattern(w), r) for w, r in zip(wanted, ran, strict=False))
        for ran in run
    )


def test_the_guide_shows_commands():
    assert len(guide_commands()) > 20


def test_every_command_of_the_guide_was_run_by_the_compose_test():
    run = [words(c) for c in RUN_COMMANDS]
    missing = [c for c in guide_commands() if not covered(c, run)]
    assert not missing, (
        "docs/deploy.md shows commands the compose test never ran:\n"
        + ("\n".join(missing))
    )
