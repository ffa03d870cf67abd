"""REST: jobs list/run/schedule/unschedule/scheduled/history, the same services as
the ``jobs`` command. Staff only (the API's default permission)."""

from __future__ import annotations

from django.db import transaction
from django.utils.decorators import method_decorator
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import ApiError, Pagination, paginated

from . import services
from .models import JobRun
from .registry import all_jobs
from .serializers import (
    JobRunSerializer,
    JobSerializer,
    ScheduledJobSerializer,
    ScheduleSerializer,
)


def api_error(exc: services.JobError) -> ApiError:
    if isinstance(exc, services.UnknownJob):
        return ApiError("jobs.unknown_job", str(exc), status.HTTP_404_NOT_FOUND)
    if isinstance(exc, services.InvalidCron):
        return ApiError("jobs.invalid_cron", str(exc), status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, services.NoBroker):
        return ApiError("jobs.no_broker", str(exc), status.HTTP_503_SERVICE_UNAVAILABLE)
    return ApiError("jobs.error", str(exc), status.HTTP_400_BAD_REQUEST)


class CallSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="the job, as in GET /api/v1/jobs/")
    args = serializers.ListField(required=False, default=list)
    kwargs = serializers.DictField(required=False, default=dict)


class RunSerializer(CallSerializer):
    delay = serializers.BooleanField(
        default=False, help_text="send to the workers instead of running here"
    )


class ScheduleRequestSerializer(CallSerializer):
    cron = serializers.CharField(help_text="'0 3 * * *' or @hourly/@daily/…")


class JobListView(APIView):
    """The jobs, sorted by name."""

    pagination_class = Pagination

    @extend_schema(responses=JobSerializer(many=True))
    def get(self, request):
        return paginated(request, self, all_jobs(), JobSerializer)


# A job run here commits its own work (purge batches, the run record) as it goes,
# not inside the request's transaction.
@method_decorator(transaction.non_atomic_requests, name="dispatch")
class RunJobView(APIView):
    """Run a job here (200, the recorded run, outcome success or failure) or send it
    to the workers with ``delay`` (202, the run recorded as queued)."""

    @extend_schema(
        request=RunSerializer,
        responses={
            200: JobRunSerializer,
            202: OpenApiResponse(JobRunSerializer, description="with delay: queued"),
        },
    )
    def post(self, request):
        params = RunSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        trigger = JobRun.Trigger.API
        try:
            if data["delay"]:
                run = services.send(
                    data["name"], data["args"], data["kwargs"], trigger=trigger
                )
                return Response(
                    JobRunSerializer(run).data, status=status.HTTP_202_ACCEPTED
                )
            outcome = services.run(
                data["name"], data["args"], data["kwargs"], trigger=trigger
            )
        except services.JobError as exc:
            raise api_error(exc) from exc
        return Response(JobRunSerializer(outcome.run).data)


class ScheduleView(APIView):
    """Schedule (201) or reschedule (200) a job with these parameters."""

    @extend_schema(
        request=ScheduleRequestSerializer,
        responses={201: ScheduleSerializer, 200: ScheduleSerializer},
    )
    def post(self, request):
        params = ScheduleRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        try:
            done = services.schedule(
                data["cron"], data["name"], data["args"], data["kwargs"]
            )
        except services.JobError as exc:
            raise api_error(exc) from exc
        return Response(
            ScheduleSerializer(done).data,
            status=status.HTTP_201_CREATED if done.created else status.HTTP_200_OK,
        )


class UnscheduleView(APIView):
    """Remove the schedule of a job with exactly these parameters (404 if none)."""

    @extend_schema(request=CallSerializer, responses=ScheduleSerializer)
    def post(self, request):
        params = CallSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        done = services.unschedule(data["name"], data["args"], data["kwargs"])
        if done is None:
            label = services.call_label(data["name"], data["args"], data["kwargs"])
            raise ApiError(
                "jobs.not_scheduled",
                f"No scheduled job match Job {label}; "
                "GET /api/v1/jobs/scheduled/ lists them with their parameters.",
                status.HTTP_404_NOT_FOUND,
            )
        return Response(ScheduleSerializer(done).data)


class ScheduledView(APIView):
    """Every periodic task Celery Beat knows."""

    pagination_class = Pagination

    @extend_schema(responses=ScheduledJobSerializer(many=True))
    def get(self, request):
        return paginated(request, self, services.scheduled(), ScheduledJobSerializer)


class HistoryView(APIView):
    """The job runs, newest first (paged: ``limit`` 1–1000, default 20)."""

    pagination_class = Pagination

    @extend_schema(
        parameters=[OpenApiParameter("job", str, description="only this job's runs")],
        responses=JobRunSerializer(many=True),
    )
    def get(self, request):
        name = request.query_params.get("job") or None
        if name and "\x00" in name:
            # PostgreSQL refuses NUL in text: a 500 otherwise (found by schemathesis).
            raise ApiError("jobs.invalid_job", "job must not contain NUL characters.")
        try:
            runs = services.runs_of(name)
        except services.JobError as exc:
            raise api_error(exc) from exc
        return paginated(request, self, runs, JobRunSerializer)
