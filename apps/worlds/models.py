"""Worlds (the event spaces attendees enter) and their rooms.

A world's settings live in ``config`` (``JWT_secrets``, ``connection_limit``,
``profile_fields``, …) exactly as the venueless world-config format has them, so
``import_config`` / ``export_config`` move them without translation. Sections of that
format Stagehand has no model for (``exhibitors``, …) are kept in ``extra`` and
exported back unchanged.
"""

from __future__ import annotations

import re

from django.core.validators import RegexValidator
from django.db import models

# \A and \Z, not ^ and $: "$" also matches before a trailing newline.
WORLD_ID_RE = r"\A[a-z0-9]+\Z"
validate_world_id = RegexValidator(
    WORLD_ID_RE,
    "A world ID is lowercase letters and digits only, such as 'harborconf2027'.",
)
# A host name, optionally with a port: events.example.org, localhost:8000.
DOMAIN_RE = re.compile(
    r"\A[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
    r"(?::[0-9]{1,5})?\Z"
)
validate_domain = RegexValidator(
    DOMAIN_RE, "A domain is a host name only, such as 'events.example.org'."
)


class WorldQuerySet(models.QuerySet):
    def alive(self) -> WorldQuerySet:
        """Return the worlds that are not soft-deleted."""
        return self.filter(deleted_at__isnull=True)


class World(models.Model):
    id = models.CharField(
        primary_key=True, max_length=50, validators=[validate_world_id]
    )
    title = models.CharField(max_length=300)
    # Null when a world came from a config file without one; NULLs never collide.
    domain = models.CharField(
        max_length=250, unique=True, null=True, blank=True, validators=[validate_domain]
    )
    config = models.JSONField(default=dict, blank=True)
    roles = models.JSONField(default=dict, blank=True)
    trait_grants = models.JSONField(default=dict, blank=True)
    # Top-level config sections without a model here (exhibitors, …), kept verbatim.
    extra = models.JSONField(default=dict, blank=True)
    locale = models.CharField(max_length=50, default="en")
    timezone = models.CharField(max_length=100, default="UTC")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True, db_index=True)

    objects = WorldQuerySet.as_manager()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.title} ({self.id})"

    @property
    def url(self) -> str:
        return f"https://{self.domain}" if self.domain else ""


class Room(models.Model):
    world = models.ForeignKey(World, related_name="rooms", on_delete=models.CASCADE)
    # The room's "id" in the world-config format; unique within its world.
    import_id = models.CharField(max_length=100)
    name = models.CharField(max_length=300)
    description = models.TextField(blank=True, default="")
    sorting_priority = models.IntegerField(default=0)
    modules = models.JSONField(default=list, blank=True)
    trait_grants = models.JSONField(default=dict, blank=True)
    # Room keys of the config format without a column here (picture, pretalx_id, …).
    extra = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["world", "sorting_priority", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["world", "import_id"], name="worlds_room_world_import_id_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.world_id}/{self.import_id})"
