"""REST: jobs list/run/schedule/unschedule/scheduled/history, the same services as
the ``jobs`` command. Staff only (the API's default permission)."""

from __future__ import annotations

from django.db import transaction
from django.utils.decorators import method_decorator
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import ApiError

from . import services
from .models import JobRun
from .registry import all_jobs


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


class ScheduleSerializer(CallSerializer):
    cron = serializers.CharField(help_text="'0 3 * * *' or @hourly/@daily/…")


class JobSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    task = serializers.CharField()


class JobRunSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    job = serializers.CharField()
    label = serializers.CharField()
    args = serializers.ListField()
    kwargs = serializers.DictField()
    trigger = serializers.ChoiceField(JobRun.Trigger.choices)
    outcome = serializers.ChoiceField(JobRun.Outcome.choices)
    queued_at = serializers.DateTimeField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    duration = serializers.FloatField(allow_null=True)
    result = serializers.CharField()
    error = serializers.CharField()
    task_id = serializers.CharField()


class ScheduledSerializer(serializers.Serializer):
    label = serializers.CharField()
    cron = serializers.CharField()


class JobListView(APIView):
    """The jobs, sorted by name."""

    @extend_schema(responses=JobSerializer(many=True))
    def get(self, request):
        return Response(
            [
                {"name": j.name, "description": j.description, "task": j.task_name}
                for j in all_jobs()
            ]
        )


# A job run here commits its own work (purge batches, the run record) as it goes,
# not inside the request's transaction.
@method_decorator(transaction.non_atomic_requests, name="dispatch")
class RunJobView(APIView):
    """Run a job here (200, the recorded run, outcome success or failure) or send it
    to the workers with ``delay`` (202, the run recorded as queued)."""

    @extend_schema(request=RunSerializer, responses=JobRunSerializer)
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
                    services.run_as_dict(run), status=status.HTTP_202_ACCEPTED
                )
            outcome = services.run(
                data["name"], data["args"], data["kwargs"], trigger=trigger
            )
        except services.JobError as exc:
            raise api_error(exc) from exc
        return Response(services.run_as_dict(outcome.run))


class ScheduleView(APIView):
    """Schedule (201) or reschedule (200) a job with these parameters."""

    @extend_schema(request=ScheduleSerializer, responses=ScheduledSerializer)
    def post(self, request):
        params = ScheduleSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        try:
            done = services.schedule(
                data["cron"], data["name"], data["args"], data["kwargs"]
            )
        except services.JobError as exc:
            raise api_error(exc) from exc
        return Response(
            {"label": done.label, "cron": done.cron},
            status=status.HTTP_201_CREATED if done.created else status.HTTP_200_OK,
        )


class UnscheduleView(APIView):
    """Remove the schedule of a job with exactly these parameters (404 if none)."""

    @extend_schema(request=CallSerializer, responses=ScheduledSerializer)
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
        return Response({"label": done.label, "cron": done.cron})


class ScheduledJobSerializer(serializers.Serializer):
    name = serializers.CharField()
    job = serializers.CharField(allow_null=True)
    task = serializers.CharField()
    label = serializers.CharField()
    args = serializers.ListField()
    kwargs = serializers.DictField()
    description = serializers.CharField()
    cron = serializers.CharField()
    timezone = serializers.CharField(allow_null=True)
    enabled = serializers.BooleanField()
    last_run_at = serializers.DateTimeField(allow_null=True)
    total_run_count = serializers.IntegerField()


class ScheduledView(APIView):
    """Every periodic task Celery Beat knows."""

    @extend_schema(responses=ScheduledJobSerializer(many=True))
    def get(self, request):
        return Response(services.scheduled())


class HistoryView(APIView):
    """The latest job runs, newest first."""

    @extend_schema(
        parameters=[
            OpenApiParameter("job", str, description="only this job's runs"),
            OpenApiParameter("limit", int, description="how many (default 20)"),
        ],
        responses=JobRunSerializer(many=True),
    )
    def get(self, request):
        name = request.query_params.get("job") or None
        if name and "\x00" in name:
            # PostgreSQL refuses NUL in text: a 500 otherwise (found by schemathesis).
            raise ApiError("jobs.invalid_job", "job must not contain NUL characters.")
        try:
            limit = int(request.query_params.get("limit", 20))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            raise ApiError("jobs.invalid_limit", "limit is a number from 1 to 1000.")
        try:
            runs = services.history(name, limit=limit)
        except services.JobError as exc:
            raise api_error(exc) from exc
        return Response([services.run_as_dict(r) for r in runs])
