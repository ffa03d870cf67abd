"""Helpers for the tests of ``--json`` output and of commands shown in docs/."""

from __future__ import annotations

import json
import re
import shlex
from io import StringIO
from pathlib import Path
from typing import Any

from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent


def run_json(command: str, *args: str, stdin: Any = None) -> tuple[Any, str]:
    """Run a command; return the one JSON document on its stdout, and its stderr.

    Fails unless stdout is exactly that document (no prompt, note or success line)."""
    out, err = StringIO(), StringIO()
    kwargs: dict[str, Any] = {"stdout": out, "stderr": err}
    if stdin is not None:
        kwargs["stdin"] = StringIO(stdin) if isinstance(stdin, str) else stdin
    call_command(command, *args, **kwargs)
    data = json.loads(out.getvalue())
    assert out.getvalue() == json.dumps(data, indent=2, sort_keys=True) + "\n"
    return data, err.getvalue()


def documented(doc: str, command: str) -> list[str]:
    """Return the arguments of ``manage.py COMMAND`` once ``doc`` shows it as a line of
    its own (a trailing ``# comment`` allowed), so the test runs what the doc says."""
    text = (ROOT / doc).read_text()
    pattern = rf"manage\.py {re.escape(command)}[ \t]*(#.*)?$"
    assert re.search(pattern, text, re.MULTILINE), f"{doc} no longer shows {command}"
    return shlex.split(command)
