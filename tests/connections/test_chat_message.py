from __future__ import annotations

import pytest

from apps.connections.models import ChatMessage
from apps.worlds.models import Room
from apps.worlds.services import create_world


@pytest.fixture
def room(db):
    world = create_world("harborconf", "Harbor Conference", "harbor.example.org")
    return Room.objects.create(world=world, import_id="hallway", name="Hallway")


def test_a_deleted_sender_leaves_the_message_unsigned(room, django_user_model):
    bob = django_user_model.objects.create(username="bob", world=room.world)
    message = ChatMessage.objects.create(room=room, sender=bob, text="hello")

    bob.delete()

    message.refresh_from_db()
    assert message.sender is None
    assert message.text == "hello"
    assert list(room.messages.all()) == [message]


def test_messages_go_with_their_room(room):
    ChatMessage.objects.create(room=room, text="hello")

    room.delete()

    assert ChatMessage.objects.count() == 0
