"""The connections part of the management API: the same list, drop and force_reload
as the ``connections`` command, over the same services."""

from __future__ import annotations

from django.db import transaction
from django.utils.decorators import method_decorator
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import ApiError, Pagination, paginated
from apps.jobs import services as jobs
from apps.jobs.api import api_error
from apps.jobs.models import JobRun
from apps.jobs.serializers import JobRunSerializer

from . import services
from .serializers import LabelSerializer, SendResultSerializer

# A minute between two connections is already a very slow drop.
MAX_INTERVAL_MS = 60_000


class SendSerializer(serializers.Serializer):
    labels = serializers.ListField(
        child=serializers.CharField(), required=False, default=list
    )
    interval_ms = serializers.IntegerField(
        required=False, default=0, min_value=0, max_value=MAX_INTERVAL_MS
    )
    spread_ms = serializers.IntegerField(
        required=False,
        default=None,
        allow_null=True,
        min_value=0,
        max_value=services.MAX_SPREAD_MS,
        help_text="clients come back at random within this many ms (default: "
        "count / CONNECTIONS_RECONNECT_RATE seconds; none when paced)",
    )
    dry_run = serializers.BooleanField(required=False, default=False)
    delay = serializers.BooleanField(
        required=False,
        default=False,
        help_text="send it to the workers as a job and answer 202 at once "
        "(a paced one takes count × interval_ms)",
    )


def _needs_redis(exc: services.LayerUnavailable) -> ApiError:
    return ApiError(
        "connections.needs_redis", str(exc), status.HTTP_503_SERVICE_UNAVAILABLE
    )


class ConnectionListView(APIView):
    pagination_class = Pagination

    @extend_schema(responses=LabelSerializer(many=True))
    def get(self, request: Request) -> Response:
        """Labels and their estimated number of connections, biggest first."""
        try:
            labels = services.list_labels()
        except services.LayerUnavailable as exc:
            raise _needs_redis(exc) from exc
        return paginated(request, self, labels, LabelSerializer)


# Outside the request's transaction, as jobs/run: a queued job's message leaves as
# soon as its run is saved, so a broker that refuses it is answered here as an error
# instead of failing the request's commit after the view.
@method_decorator(transaction.non_atomic_requests, name="dispatch")
class SendView(APIView):
    move: services.Move

    @extend_schema(
        request=SendSerializer,
        responses={
            200: SendResultSerializer,
            202: OpenApiResponse(JobRunSerializer, description="with delay"),
        },
    )
    def post(self, request: Request) -> Response:
        params = SendSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        try:
            selection = services.select(data["labels"])
            if data["delay"] and not data["dry_run"]:
                return self.delay(
                    data["labels"], data["interval_ms"], data["spread_ms"]
                )
            if data["dry_run"]:
                result = services.SendResult(
                    selection.count, selection.labels, move=self.move
                )
            else:
                result = services.move(
                    self.move,
                    selection,
                    interval_ms=data["interval_ms"],
                    spread_ms=data["spread_ms"],
                )
        except services.LayerUnavailable as exc:
            raise _needs_redis(exc) from exc
        return Response(
            SendResultSerializer(result.as_dict(dry_run=data["dry_run"])).data
        )

    def delay(
        self, labels: list[str], interval_ms: int, spread_ms: int | None
    ) -> Response:
        """Queue the job for the workers; answer 202 with its run, as jobs/run."""
        try:
            run = services.move_later(
                self.move,
                labels,
                interval_ms=interval_ms,
                spread_ms=spread_ms,
                trigger=JobRun.Trigger.API,
            )
        except jobs.JobError as exc:
            raise api_error(exc) from exc
        return Response(JobRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class DropView(SendView):
    """Close every connection whose label matches one of ``labels`` (default all)."""

    move = services.Move.DROP


class ForceReloadView(SendView):
    """Tell every matching client to reload, then close it after a short grace."""

    move = services.Move.RELOAD
