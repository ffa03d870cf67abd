from __future__ import annotations

import pytest

from apps.connections.models import ChatMessage


@pytest.fixture
def room(harbor_live):
    """Harbor's Hallway Track, a chat room."""
    return harbor_live.rooms.get(import_id="hallway")


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
