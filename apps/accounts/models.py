"""The user model, for operators and attendees alike.

Operators sign in to the admin and the API with a username or email and a password.
Attendees of a world are users too: the Worlds app links them to their world and the
``uid`` of the token they connected with. Swapping a user model later is painful, so
everything both kinds need is here from the first migration.
"""

from django.contrib.auth.models import AbstractUser
from django.contrib.auth.models import UserManager as DjangoUserManager
from django.db import models
from django.db.models.functions import Lower


class UserManager(DjangoUserManager):
    def get_by_natural_key(self, username: str) -> "User":
        # Operators sign in with their username or their email, case-insensitively.
        return self.get(
            models.Q(username=username) | models.Q(email__iexact=username, email__gt="")
        )


class User(AbstractUser):
    email = models.EmailField("email address", blank=True, default="")
    display_name = models.CharField(max_length=200, blank=True, default="")
    # Attendees: the traits their latest token carried and the profile they filled in.
    traits = models.JSONField(default=list, blank=True)
    profile = models.JSONField(default=dict, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # Attendees belong to one world and are known by the ``uid`` of their token;
    # operators have no world.
    world = models.ForeignKey(
        "worlds.World",
        null=True,
        blank=True,
        related_name="attendees",
        on_delete=models.CASCADE,
    )
    token_id = models.CharField(max_length=200, blank=True, default="")

    objects = UserManager()

    REQUIRED_FIELDS = ["email"]

    class Meta:
        constraints = [
            # Email is unique regardless of case, but attendees may have none.
            models.UniqueConstraint(
                Lower("email"),
                condition=~models.Q(email=""),
                name="accounts_user_email_ci_unique",
                violation_error_message="A user with this email address already exists.",
            ),
            models.UniqueConstraint(
                fields=["world", "token_id"],
                condition=models.Q(world__isnull=False),
                name="accounts_user_world_token_id_unique",
            ),
        ]

    def __str__(self) -> str:
        return self.display_name or self.username

    def save(self, *args, **kwargs) -> None:
        self.email = (self.email or "").strip()
        super().save(*args, **kwargs)
