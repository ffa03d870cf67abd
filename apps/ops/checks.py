"""Deploy checks (``manage.py check --deploy``) of Stagehand's own configuration."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings
from django.core import checks

from apps.core.environment import DEFAULT, Variable, variables_read
from apps.core.secrets import mask_setting

# The .envs/.production/*.template files mark what the operator must fill in as
# <text in angle brackets>; no real host name, key or URL holds such text.
PLACEHOLDER = re.compile(r"<[^<>\n]+>")
# ...except an e-mail address in a From: "Stagehand <ops@example.org>" is real.
ANGLE_ADDRESS = re.compile(r"<[^<>@\s:/]+@[^<>@\s:/]+>")
TEMPLATES = ".envs/.production"


def template_lines(root: Path) -> dict[str, tuple[str, str]]:
    """Return each variable the production templates set -> (its env file, its value).

    The image leaves the templates out (.dockerignore), so this may well be empty.
    """
    lines: dict[str, tuple[str, str]] = {}
    for template in sorted((root / TEMPLATES).glob("*.template")):
        env_file = f"{TEMPLATES}/{template.name.removesuffix('.template')}"
        for line in template.read_text(encoding="utf-8").splitlines():
            name, equals, value = line.partition("=")
            if equals and not name.lstrip().startswith("#"):
                lines[name.strip()] = (env_file, value.strip())
    return lines


def template_placeholders(lines: dict[str, tuple[str, str]]) -> list[str]:
    """Every placeholder the templates hold, longest first.

    A whole value in angle brackets is one placeholder even when it holds an
    address (``<Stagehand <stagehand@your-domain>>``).
    """
    found = set()
    for _, value in lines.values():
        if value.startswith("<") and value.endswith(">"):
            found.add(value)
        found.update(PLACEHOLDER.findall(value))
    return sorted(found, key=len, reverse=True)


def _text(value: object) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _placeholder_in(text: str, known: list[str]) -> str | None:
    """The template placeholder in ``text``, or any text that looks like one."""
    for placeholder in known:
        if placeholder in text:
            return placeholder
    found = PLACEHOLDER.search(ANGLE_ADDRESS.sub("", text))
    return found.group() if found else None


def _where(name: str, placeholder: str | None, lines: dict) -> str:
    """The env file to fix: the variable's own, or the one whose line holds the text.

    The entrypoint builds DATABASE_URL from .postgres's POSTGRES_USER and friends.
    """
    if name in lines:
        return lines[name][0]
    for other, (env_file, value) in lines.items():
        if placeholder and placeholder in value:
            return f"{env_file} ({other})"
    return "the env file under .envs/.production/ that sets it"


def _error(variable: Variable, known: list[str], lines: dict) -> checks.Error | None:
    if variable.source == DEFAULT:
        return None
    if _placeholder_in(_text(variable.value), known) is None:
        return None
    # Named only as far as the masked value shows it: a secret that happens to
    # hold angle brackets is never printed.
    shown = _placeholder_in(_text(mask_setting(variable.name, variable.value)), known)
    what = f"placeholder {shown}" if shown else "placeholder (not shown)"
    return checks.Error(
        f"{variable.name} still holds the template's {what}; "
        f"replace it in {_where(variable.name, shown, lines)}.",
        id="ops.E001",
    )


def placeholders_left(**kwargs) -> list[checks.CheckMessage]:
    """An error for each variable the settings read that still holds a placeholder."""
    lines = template_lines(Path(settings.BASE_DIR))
    known = template_placeholders(lines)
    errors = [_error(variable, known, lines) for variable in variables_read()]
    return [error for error in errors if error is not None]
