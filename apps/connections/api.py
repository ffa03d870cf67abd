"""The connections part of the management API: the same list, drop and force_reload
as the ``connections`` command, over the same services."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import ApiError

from . import services


class LabelSerializer(serializers.Serializer):
    label = serializers.CharField()
    connections = serializers.IntegerField()


class SendSerializer(serializers.Serializer):
    labels = serializers.ListField(
        child=serializers.CharField(), required=False, default=list
    )
    interval_ms = serializers.IntegerField(required=False, default=0, min_value=0)
    dry_run = serializers.BooleanField(required=False, default=False)


class SendResultSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    labels = serializers.ListField(child=serializers.CharField())
    unreachable = serializers.IntegerField()
    dry_run = serializers.BooleanField()


def _needs_redis(exc: services.LayerUnavailable) -> ApiError:
    return ApiError(
        "connections.needs_redis", str(exc), status.HTTP_503_SERVICE_UNAVAILABLE
    )


class ConnectionListView(APIView):
    @extend_schema(responses=LabelSerializer(many=True))
    def get(self, request: Request) -> Response:
        """Labels and their estimated number of connections, biggest first."""
        try:
            labels = services.list_labels()
        except services.LayerUnavailable as exc:
            raise _needs_redis(exc) from exc
        return Response([item.as_dict() for item in labels])


class SendView(APIView):
    action_name = ""

    @extend_schema(request=SendSerializer, responses=SendResultSerializer)
    def post(self, request: Request) -> Response:
        params = SendSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        try:
            selection = services.select(data["labels"])
            if data["dry_run"]:
                result = services.SendResult(selection.count, selection.labels)
            else:
                send = (
                    services.drop
                    if self.action_name == "drop"
                    else services.force_reload
                )
                result = send(selection, interval_ms=data["interval_ms"])
        except services.LayerUnavailable as exc:
            raise _needs_redis(exc) from exc
        return Response(
            {
                "count": result.count,
                "labels": result.labels,
                "unreachable": result.unreachable,
                "dry_run": data["dry_run"],
            }
        )


class DropView(SendView):
    """Close every connection whose label matches one of ``labels`` (default all)."""

    action_name = "drop"


class ForceReloadView(SendView):
    """Tell every matching client to reload, then close it after a short grace."""

    action_name = "force_reload"
