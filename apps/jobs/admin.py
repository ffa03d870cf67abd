from django.conf import settings
from django.contrib import admin, messages
from django_celery_beat.admin import PeriodicTaskAdmin as BeatPeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask

from . import services
from .models import BeatLock, JobRun
from .registry import TASK_PREFIX
from .services import call_label


@admin.register(JobRun)
class JobRunAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "label",
        "trigger",
        "outcome",
        "started_at",
        "duration",
        "task_id",
    )
    list_filter = ("outcome", "trigger", "job")
    search_fields = ("job", "task_id", "error")
    date_hierarchy = "started_at"
    readonly_fields = [f.name for f in JobRun._meta.fields]

    def get_queryset(self, request):
        services.mark_lost_runs()
        return super().get_queryset(request)

    @admin.display(description="job")
    def label(self, run: JobRun) -> str:
        return call_label(run.job, run.args, run.kwargs)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(BeatLock)
class BeatLockAdmin(admin.ModelAdmin):
    list_display = ("name", "holder", "acquired_at", "expires_at")

    def has_add_permission(self, request) -> bool:
        return False


class PeriodicTaskAdmin(BeatPeriodicTaskAdmin):
    """django-celery-beat's admin, with "Run selected tasks" recorded as what it is.

    The original sends each task with Celery Beat's header, so the run would say
    trigger ``beat``; a job is sent (or, without a broker, run here) as ``admin``.
    """

    @admin.action(description=BeatPeriodicTaskAdmin.run_tasks.short_description)
    def run_tasks(self, request, queryset):
        others = queryset.exclude(task__startswith=TASK_PREFIX)
        if others.exists():
            super().run_tasks(request, others)
        for task in queryset.filter(task__startswith=TASK_PREFIX).order_by("name"):
            name = task.task.removeprefix(TASK_PREFIX)
            args = services.schedules.loads(task.args, [])
            kwargs = services.schedules.loads(task.kwargs, {})
            label = call_label(name, args, kwargs)
            try:
                if settings.STAGEHAND_HAS_BROKER:
                    run = services.send(
                        name, args, kwargs, trigger=JobRun.Trigger.ADMIN
                    )
                    self.message_user(request, f"Sent Job {label} (run #{run.pk}).")
                    continue
                outcome = services.run(name, args, kwargs, trigger=JobRun.Trigger.ADMIN)
            except services.JobError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            if outcome.error is not None:
                self.message_user(
                    request,
                    f"Job {label} failed (run #{outcome.run.pk}): {outcome.error}",
                    messages.ERROR,
                )
            else:
                self.message_user(request, f"Ran Job {label} (run #{outcome.run.pk}).")


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, PeriodicTaskAdmin)
