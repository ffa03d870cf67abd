from __future__ import annotations

import shlex
from io import StringIO

import pytest
from django.core.management import call_command

from apps.accounts.models import User
from apps.search import services
from apps.worlds.models import Room, World


def run(*args: str) -> str:
    out = StringIO()
    call_command("search", *args, stdout=out)
    return out.getvalue()


def run_printed(command: str) -> str:
    """Run a 'python manage.py search …' line exactly as the index command printed it."""
    words = shlex.split(command)
    assert words[:3] == ["python", "manage.py", "search"], command
    return run(*words[3:])


def found(text: str, **kwargs) -> list[tuple[str, str]]:
    return [(h.model, h.id) for h in services.query(text, **kwargs)]


@pytest.fixture
def harbor(db):
    """A world with two rooms (one a markdown page) and two attendees."""
    world = World.objects.create(
        id="harborconf",
        title="Harbor Conference",
        domain="harbor.example.org",
        config={
            "profile_fields": [
                {
                    "id": "org",
                    "label": "Organization",
                    "type": "text",
                    "searchable": True,
                },
                {"id": "phone", "label": "Phone", "type": "text", "searchable": False},
            ]
        },
    )
    Room.objects.create(
        world=world,
        import_id="main",
        name="Main Stage",
        description="Keynotes and plenary sessions",
        modules=[{"type": "livestream.native", "config": {"hls_url": "x"}}],
    )
    Room.objects.create(
        world=world,
        import_id="welcome",
        name="Welcome",
        description="Start here",
        modules=[
            {"type": "page.markdown", "config": {"content": "# Lighthouse tours daily"}}
        ],
    )
    User.objects.create(
        username="harborconf.1",
        world=world,
        token_id="1",
        display_name="Grace Hopper",
        profile={"org": "Navy Research", "phone": "5550199"},
    )
    User.objects.create(
        username="harborconf.2", world=world, token_id="2", display_name="Ada Lovelace"
    )
    return world
