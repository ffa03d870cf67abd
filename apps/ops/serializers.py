"""The shape of the backend's status: what ``/api/v1/stats/`` answers, what
``stats --json`` prints and what the OpenAPI schema documents, defined once."""

from __future__ import annotations

from rest_framework import serializers

HEALTH = ["ok", "unavailable"]


class ComponentSerializer(serializers.Serializer):
    name = serializers.CharField()
    backend = serializers.CharField()
    status = serializers.ChoiceField(choices=HEALTH, source="health")
    ok = serializers.BooleanField()
    configured = serializers.BooleanField()
    detail = serializers.CharField(allow_blank=True)
    figures = serializers.DictField()


class StatsSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=HEALTH, help_text="ok when every configured component is"
    )
    components = ComponentSerializer(many=True)
