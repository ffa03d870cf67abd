"""The shape of the backend's status: what ``/api/v1/stats/`` answers, what
``stats --json`` prints and what the OpenAPI schema documents, defined once."""

from __future__ import annotations

from rest_framework import serializers

from .services import OK, STATUSES, UNAVAILABLE


class ComponentSerializer(serializers.Serializer):
    name = serializers.CharField()
    backend = serializers.CharField()
    status = serializers.ChoiceField(
        choices=STATUSES, help_text="a component that is not configured fails nothing"
    )
    ok = serializers.BooleanField()
    configured = serializers.BooleanField()
    detail = serializers.CharField(allow_blank=True)
    figures = serializers.DictField()


class StatsSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=[OK, UNAVAILABLE], help_text="ok when every configured component is"
    )
    components = ComponentSerializer(many=True)
