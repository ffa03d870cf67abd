"""The shape of a purge report: what ``/api/v1/users/purge/`` answers and what the
OpenAPI schema documents, defined once."""

from __future__ import annotations

from rest_framework import serializers

from .services import PurgeReport


class PurgeItemSerializer(serializers.Serializer):
    what = serializers.CharField()
    count = serializers.IntegerField()
    action = serializers.CharField()


class PurgeReportSerializer(serializers.Serializer):
    user = serializers.IntegerField(source="user_id")
    label = serializers.CharField()
    dry_run = serializers.BooleanField()
    items = serializers.SerializerMethodField()
    summary = serializers.CharField()

    def get_items(self, report: PurgeReport) -> list[dict]:
        return PurgeItemSerializer(
            [
                {"what": what, "count": count, "action": action}
                for what, count, action in report.items
            ],
            many=True,
        ).data


class ApiTokenSerializer(serializers.Serializer):
    """An API token's holder, as ``api_token … --json`` prints it (never the key)."""

    email = serializers.CharField(source="user.email")
    username = serializers.CharField(source="user.username")
    staff = serializers.BooleanField(source="user.is_staff")
    created = serializers.DateTimeField()
