"""Deploy checks (``manage.py check --deploy``) of Stagehand's own configuration."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings
from django.core import checks

from apps.core.environment import DEFAULT, variables_read
from apps.core.logs import FORMATS
from apps.core.secrets import mask_setting

# The .envs/.production/*.template files mark what the operator must fill in as
# NAME=<text in angle brackets>: a whole value in brackets, or a URL the entrypoint
# built from one (postgres://<database user>:…). A real value may hold brackets
# elsewhere ("Stagehand <stagehand@example.org>"), a real URL never does.
PLACEHOLDER = re.compile(r"<[^<>\n]+>")
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


def _text(value: object) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def holds_placeholder(value: object) -> bool:
    """Whether a value (or an item of a list) is a template's placeholder."""
    items = value if isinstance(value, list | tuple) else [value]
    for item in map(str, items):
        item = item.strip()
        if PLACEHOLDER.fullmatch(item) or ("://" in item and PLACEHOLDER.search(item)):
            return True
    return False


def placeholders_left(**kwargs) -> list[checks.CheckMessage]:
    """An error for each variable the settings read that still holds a placeholder.

    The placeholder is named only as far as the masked value shows it, so a secret
    that happens to hold angle brackets is never printed.
    """
    lines = template_lines(Path(settings.BASE_DIR))
    errors = []
    for variable in variables_read():
        if variable.source == DEFAULT or not holds_placeholder(variable.value):
            continue
        shown = PLACEHOLDER.search(_text(mask_setting(variable.name, variable.value)))
        placeholder = shown.group() if shown else None
        what = f"placeholder {placeholder}" if shown else "placeholder (not shown)"
        where = _where(variable.name, placeholder, lines)
        errors.append(
            checks.Error(
                f"{variable.name} still holds the template's {what}; "
                f"replace it in {where}.",
                id="ops.E001",
            )
        )
    return errors


def log_format_check(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """LOG_FORMAT names a format (a typo would silently log text)."""
    if settings.LOG_FORMAT in FORMATS:
        return []
    return [
        checks.Error(
            f"LOG_FORMAT={settings.LOG_FORMAT!r} is not a log format.",
            hint="Set LOG_FORMAT to text (the default) or json.",
            id="ops.E002",
        )
    ]
