"""The shape of a search hit: what ``/api/v1/search/`` answers, what
``search query --json`` prints and what the OpenAPI schema documents, defined once."""

from __future__ import annotations

from rest_framework import serializers


class RankField(serializers.FloatField):
    """The rank to six decimals: enough to order by, short to read."""

    def to_representation(self, value: float) -> float:
        return round(float(value), 6)


class HitSerializer(serializers.Serializer):
    model = serializers.CharField(help_text="world, room or attendee")
    id = serializers.CharField()
    world = serializers.CharField()
    title = serializers.CharField()
    snippet = serializers.CharField(help_text="the matched words in **bold**")
    rank = RankField(help_text="higher is better")
