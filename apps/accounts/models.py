"""The user model, for operators and attendees alike.

Operators sign in to the admin and the API with a username or email and a password.
Attendees of a world are users too: the Worlds app links them to their world and the
``uid`` of the token they connected with. Swapping a user model later is painful, so
everything both kinds need is here from the first migration.
"""

from django.contrib.auth.models import AbstractUser
from django.contrib.auth.models import UserManager as DjangoUserManager
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone


def email_taken_message(email: str, existing: str) -> str:
    return (
        f"A user with email {email} already exists; use set_admin {existing} to "
        "change their rights (emails are compared ignoring case)."
    )


class UserManager(DjangoUserManager):
    def create_superuser(self, username, email=None, password=None, **extra_fields):
        # createsuperuser turns a ValidationError into its CommandError, where the
        # database's case-insensitive constraint would raise an IntegrityError.
        existing = (
            self.filter(email__iexact=email.strip()).values_list("email", flat=True)
            if email and email.strip()
            else []
        )
        for other in existing[:1]:
            raise ValidationError(email_taken_message(email.strip(), other))
        return super().create_superuser(username, email, password, **extra_fields)

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
    # Set once, when a purge anonymised the account: the row is a tombstone from then
    # on (it refuses the attendee's token) and no purge touches it again.
    purged_at = models.DateTimeField(null=True, blank=True)
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
    # A private upload: purge_user deletes the file, check_integrity checks it exists.
    avatar = models.FileField(upload_to="avatars/", blank=True, default="")
    # When the row last changed, for `search index -f` catch-ups (see save()).
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

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
        update_fields = kwargs.get("update_fields")
        if update_fields and "updated_at" not in update_fields:
            # auto_now is only written when listed: keep "modified since" honest.
            kwargs["update_fields"] = [*update_fields, "updated_at"]
        super().save(*args, **kwargs)


class Terms(models.Model):
    """One version of a text attendees must accept, such as the terms of service.

    Versions of the same ``slug`` replace each other: from its ``active_from`` on, the
    newest active version is the one an attendee has to have accepted.
    """

    slug = models.SlugField(max_length=100)
    version = models.CharField(max_length=50)
    name = models.CharField(max_length=200)
    text = models.TextField(help_text="Markdown.")
    required = models.BooleanField(
        default=True, help_text="Attendees must accept it before they can take part."
    )
    active_from = models.DateTimeField(default=timezone.now, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "terms"
        verbose_name_plural = "terms"
        ordering = ["slug", "-active_from", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["slug", "version"], name="accounts_terms_slug_version_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug} {self.version})"


class TermsAcceptance(models.Model):
    """That a user accepted one version of some terms, and when."""

    user = models.ForeignKey(
        User, on_delete=models.CASCADE, related_name="terms_acceptances"
    )
    terms = models.ForeignKey(
        Terms, on_delete=models.PROTECT, related_name="acceptances"
    )
    accepted_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-accepted_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "terms"], name="accounts_termsacceptance_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} accepted {self.terms.slug} {self.terms.version}"
