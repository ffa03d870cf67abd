from __future__ import annotations

import shlex

from apps.search import services
from tests.helpers import call


def run_printed(command: str) -> str:
    """Run a 'python manage.py search …' line exactly as the index command printed it."""
    words = shlex.split(command)
    assert words[:3] == ["python", "manage.py", "search"], command
    return call("search", *words[3:])


def found(text: str, **kwargs) -> list[tuple[str, str]]:
    return [(h.model, h.id) for h in services.query(text, **kwargs)]
