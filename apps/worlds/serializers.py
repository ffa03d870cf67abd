"""The shapes of worlds, rooms and the results of world actions: what the API
answers, what ``list_worlds --json`` prints and what the OpenAPI schema documents,
defined once. None of them contains a JWT secret (export is the config file itself).
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from .models import Room, World


def redacted_config(config: dict[str, Any]) -> dict[str, Any]:
    """Return ``config`` with each JWT secret left out (issuer and audience stay)."""
    data = {k: v for k, v in (config or {}).items() if k != "JWT_secrets"}
    data["JWT_secrets"] = [
        {"issuer": e.get("issuer"), "audience": e.get("audience")}
        for e in (config or {}).get("JWT_secrets") or []
        if isinstance(e, dict)
    ]
    return data


class RoomSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="import_id")

    class Meta:
        model = Room
        fields = [
            "id",
            "name",
            "description",
            "sorting_priority",
            "modules",
            "trait_grants",
        ]


class LiveRoomsSerializer(serializers.ListSerializer):
    """A world's rooms that are not deleted, in the order attendees see them."""

    def to_representation(self, data: Any) -> list[Any]:
        rooms = data.filter(deleted_at__isnull=True).order_by(
            "sorting_priority", "name", "pk"
        )
        return super().to_representation(rooms)


class RedactedConfigField(serializers.DictField):
    """A world's config with each JWT secret's issuer and audience, not the secret."""

    def to_representation(self, value: dict[str, Any]) -> dict[str, Any]:
        return redacted_config(value)


class WorldSerializer(serializers.ModelSerializer):
    """A world in a list: no config, no secrets."""

    url = serializers.CharField(read_only=True)

    class Meta:
        model = World
        fields = [
            "id",
            "title",
            "domain",
            "url",
            "locale",
            "timezone",
            "created_at",
            "updated_at",
            "deleted_at",
        ]


class WorldDetailSerializer(WorldSerializer):
    config = RedactedConfigField(read_only=True)
    rooms = LiveRoomsSerializer(child=RoomSerializer(), read_only=True)

    class Meta(WorldSerializer.Meta):
        fields = WorldSerializer.Meta.fields + [
            "config",
            "roles",
            "trait_grants",
            "rooms",
        ]


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()
    url = serializers.CharField(
        allow_null=True, help_text="the world's address with the token; null without"
    )


class CountsSerializer(serializers.Serializer):
    """What deleting a world removes (or, dry, would)."""

    worlds = serializers.IntegerField()
    rooms = serializers.IntegerField()
    messages = serializers.IntegerField()
    attendees = serializers.IntegerField()
    dry_run = serializers.BooleanField()


class ImportResultSerializer(serializers.Serializer):
    id = serializers.CharField(source="world.id")
    created = serializers.BooleanField()
    rooms_created = serializers.IntegerField()
    rooms_updated = serializers.IntegerField()
    rooms_deleted = serializers.IntegerField()
