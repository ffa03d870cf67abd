"""What attendees say in rooms: the user content that clone skips and purge handles."""

from django.conf import settings
from django.db import models


class ChatMessage(models.Model):
    room = models.ForeignKey(
        "worlds.Room", related_name="messages", on_delete=models.CASCADE
    )
    # Purging a user keeps the conversation readable: the message stays, unsigned.
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        related_name="chat_messages",
        on_delete=models.SET_NULL,
    )
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["room", "created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.sender or 'deleted user'} in {self.room}: {self.text[:40]}"
