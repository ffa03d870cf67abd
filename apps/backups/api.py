"""/api/v1/backups/ for staff: the same services as `backups`, `backup` and `restore`."""

from __future__ import annotations

from django.conf import settings
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
from .serializers import BackupSerializer, RestoreResultSerializer


class CreateSerializer(serializers.Serializer):
    database = serializers.CharField(default="default")
    compress = serializers.BooleanField(default=True)


class RestoreSerializer(serializers.Serializer):
    name = serializers.CharField(default="latest", help_text="a backup name or latest")
    database = serializers.CharField(default="default")
    confirm = serializers.CharField(
        required=False,
        default="",
        help_text="the backup's full name: the explicit go-ahead to replace the database",
    )
    dry_run = serializers.BooleanField(default=False)


def _queue(name: str, kwargs: dict) -> Response:
    """Send the job to the workers; answer 202 with its run (as jobs/run does)."""
    try:
        run = jobs.send(name, kwargs=kwargs, trigger=JobRun.Trigger.API)
    except jobs.JobError as exc:
        raise api_error(exc) from exc
    return Response(JobRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


def _fail(exc: services.BackupError) -> ApiError:
    if isinstance(exc, services.StorageUnavailable):
        return ApiError(
            "backups.storage_unavailable", str(exc), status.HTTP_503_SERVICE_UNAVAILABLE
        )
    if isinstance(exc, services.BackupNotFound):
        return ApiError("backups.not_found", str(exc), status.HTTP_404_NOT_FOUND)
    return ApiError("backups.failed", str(exc))


# A backup or restore runs outside the request's transaction: restore must close this
# process's connections to swap databases.
@method_decorator(transaction.non_atomic_requests, name="dispatch")
class BackupListView(APIView):
    """List the backups (newest first), or take one now (POST)."""

    pagination_class = Pagination

    @extend_schema(responses=BackupSerializer(many=True))
    def get(self, request: Request) -> Response:
        try:
            backups = services.list_backups()
        except services.BackupError as exc:
            raise _fail(exc) from None
        return paginated(request, self, backups, BackupSerializer)

    @extend_schema(
        request=CreateSerializer,
        responses={
            201: OpenApiResponse(BackupSerializer, description="without a broker"),
            202: OpenApiResponse(JobRunSerializer, description="queued: the run"),
        },
    )
    def post(self, request: Request) -> Response:
        """With a broker, queue the backup job (which also applies BACKUP_KEEP and
        verifies) and answer 202 with its run; without one, back up here (201)."""
        params = CreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        if settings.STAGEHAND_HAS_BROKER:
            try:
                services.engine_of(params.validated_data["database"])
            except services.BackupError as exc:
                raise _fail(exc) from None
            return _queue("backup", dict(params.validated_data))
        try:
            result = services.backup(
                params.validated_data["database"],
                compress=params.validated_data["compress"],
            )
        except services.BackupError as exc:
            raise _fail(exc) from None
        return Response(BackupSerializer(result).data, status=status.HTTP_201_CREATED)


@method_decorator(transaction.non_atomic_requests, name="dispatch")
class RestoreView(APIView):
    """Replace a database with a backup; ``confirm`` must repeat the backup's name.

    Without the confirmation (or with ``dry_run``) nothing changes, and the answer says
    which backup would be restored. With a broker, the restore (or the rehearsal of a
    dry run) is queued as a job and the answer is 202 with its run.
    """

    @extend_schema(
        request=RestoreSerializer,
        responses={
            200: OpenApiResponse(RestoreResultSerializer, description="no broker"),
            202: OpenApiResponse(JobRunSerializer, description="queued: the run"),
        },
    )
    def post(self, request: Request) -> Response:
        params = RestoreSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        queue = settings.STAGEHAND_HAS_BROKER
        try:
            item = services.verify(data["name"], data["database"])
            target = {"name": item.name, "database": data["database"]}
            if data["dry_run"]:
                if queue:
                    return _queue("verify-backup", target)
                result = services.restore(item.name, data["database"], dry_run=True)
            elif data["confirm"] != item.name:
                raise ApiError(
                    "backups.confirmation_required",
                    f"Restoring replaces database {data['database']!r} with "
                    f"{item.name}; send confirm={item.name!r} to go ahead.",
                )
            elif queue:
                return _queue("restore", target)
            else:
                result = services.restore(
                    item.name, data["database"], trigger=JobRun.Trigger.API
                )
        except services.BackupError as exc:
            raise _fail(exc) from None
        return Response(RestoreResultSerializer(result).data)
