"""The shapes of jobs, runs and schedules: what the API answers, what ``jobs … --json``
prints and what the OpenAPI schema documents, defined once."""

from __future__ import annotations

from rest_framework import serializers

from . import services
from .models import JobRun


class JobSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    task = serializers.CharField(source="task_name")


class JobRunSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    job = serializers.CharField()
    label = serializers.SerializerMethodField()
    args = serializers.ListField()
    kwargs = serializers.DictField()
    trigger = serializers.ChoiceField(JobRun.Trigger.choices)
    outcome = serializers.ChoiceField(JobRun.Outcome.choices)
    queued_at = serializers.DateTimeField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    duration = serializers.FloatField(allow_null=True, help_text="seconds")
    result = serializers.CharField(allow_blank=True)
    error = serializers.CharField(allow_blank=True, help_text="the traceback")
    task_id = serializers.CharField(allow_blank=True)

    def get_label(self, run: JobRun) -> str:
        return services.call_label(run.job, run.args, run.kwargs)


class ScheduleSerializer(serializers.Serializer):
    """A schedule that was set or removed."""

    label = serializers.CharField()
    cron = serializers.CharField()


class ScheduledJobSerializer(serializers.Serializer):
    """A periodic task Celery Beat knows (ours with ``job`` set)."""

    name = serializers.CharField()
    job = serializers.CharField(allow_null=True)
    task = serializers.CharField()
    label = serializers.CharField()
    args = serializers.ListField()
    kwargs = serializers.DictField()
    description = serializers.CharField(allow_blank=True)
    cron = serializers.CharField()
    timezone = serializers.CharField(allow_null=True)
    enabled = serializers.BooleanField()
    last_run_at = serializers.DateTimeField(allow_null=True)
    total_run_count = serializers.IntegerField()
