"""The shapes of a purge report (what ``/api/v1/users/purge/`` answers and the
OpenAPI schema documents), of an API token's holder (``api_token … --json``), of a
user (``create_user``/``set_admin --json``) and of terms (``import_terms --json``),
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


class UserSerializer(serializers.Serializer):
    """A user, as ``create_user --json`` and ``set_admin --json`` print it (never the
    password hash); ``world`` and ``uid`` are set for an attendee."""

    id = serializers.IntegerField(source="pk")
    email = serializers.CharField()
    username = serializers.CharField()
    staff = serializers.BooleanField(source="is_staff")
    superuser = serializers.BooleanField(source="is_superuser")
    world = serializers.CharField(source="world_id", allow_null=True)
    uid = serializers.CharField(source="token_id", allow_blank=True)


class TermsSerializer(serializers.Serializer):
    """One version of terms, as ``import_terms --json`` prints it (without the text)."""

    id = serializers.IntegerField(source="pk")
    slug = serializers.CharField()
    version = serializers.CharField()
    name = serializers.CharField()
    required = serializers.BooleanField()
    active_from = serializers.DateTimeField()
