from __future__ import annotations

import io

import pytest


class TerminalInput(io.StringIO):
    """Standard input that says it is a terminal, answering with the given lines."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def terminal():
    return TerminalInput


@pytest.fixture
def bob(db):
    """Bob, an operator without admin rights."""
    from apps.accounts.models import User

    return User.objects.create_user("bob", "bob@example.org", "tulip-river-91")
