"""The shapes of labels and of a drop or reload: what the API answers, what
``connections … --json`` prints and what the OpenAPI schema documents, defined once."""

from __future__ import annotations

from rest_framework import serializers


class LabelSerializer(serializers.Serializer):
    label = serializers.CharField(help_text="<commit>.<environment>")
    connections = serializers.IntegerField(help_text="seen within the heartbeat window")


class SendResultSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="connections reached (or, dry, matched)")
    labels = serializers.ListField(child=serializers.CharField())
    unreachable = serializers.IntegerField()
    dry_run = serializers.BooleanField()
