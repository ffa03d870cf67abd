"""The shapes of a purge report (what ``/api/v1/users/purge/`` answers and the
OpenAPI schema documents) and of an API token's holder (``api_token … --json``),
defined once."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


class PurgeItemSerializer(serializers.Serializer):
    """One line of a report, from the report's ``(what, count, action)``."""

    what = serializers.CharField()
    count = serializers.IntegerField()
    action = serializers.CharField()

    def to_representation(self, item: tuple[str, int, str]) -> dict:
        what, count, action = item
        return super().to_representation(
            {"what": what, "count": count, "action": action}
        )


class PurgeReportSerializer(serializers.Serializer):
    user = serializers.SerializerMethodField()
    label = serializers.CharField()
    dry_run = serializers.BooleanField()
    items = PurgeItemSerializer(many=True)
    summary = serializers.CharField()

    @extend_schema_field(OpenApiTypes.INT)
    def get_user(self, report) -> int:
        """The purged user's id, from the context (a report is about its items)."""
        return self.context["user"].pk


class ApiTokenSerializer(serializers.Serializer):
    """An API token's holder, as ``api_token … --json`` prints it (never the key)."""

    email = serializers.CharField(source="user.email")
    username = serializers.CharField(source="user.username")
    staff = serializers.BooleanField(source="user.is_staff")
    created = serializers.DateTimeField()
