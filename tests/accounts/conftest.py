from __future__ import annotations

import io

import pytest

from apps.connections.models import ChatMessage
from apps.worlds import services as worlds
from apps.worlds.models import Room


class TerminalInput(io.StringIO):
    """Standard input that says it is a terminal, answering with the given lines."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def terminal():
    return TerminalInput


@pytest.fixture
def media(settings, tmp_path):
    """An empty MEDIA_ROOT of this test's own."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


@pytest.fixture
def expo(db):
    """A world with a chat room, where attendee Cleo and attendee Dan have talked."""
    world = worlds.create_world("expo", "Expo", "expo.example.org")
    room = Room.objects.create(
        world=world,
        import_id="lobby",
        name="Lobby",
        modules=[{"type": "chat.native", "config": {}}],
    )
    cleo_token = worlds.generate_token(world, ["attendee"], uid="cleo-uid")
    cleo = worlds.get_or_create_attendee(world, worlds.verify_token(world, cleo_token))
    cleo.display_name = "Cleo Example"
    cleo.profile = {"company": "Cleo Corp"}
    cleo.save()
    dan_token = worlds.generate_token(world, ["attendee"], uid="dan-uid")
    dan = worlds.get_or_create_attendee(world, worlds.verify_token(world, dan_token))
    for text in ("hello", "anyone here?", "bye"):
        ChatMessage.objects.create(room=room, sender=cleo, text=text)
    ChatMessage.objects.create(room=room, sender=dan, text="hi Cleo")

    class Expo:
        pass

    expo = Expo()
    expo.world, expo.room, expo.cleo, expo.dan = world, room, cleo, dan
    expo.cleo_token, expo.dan_token = cleo_token, dan_token
    return expo
