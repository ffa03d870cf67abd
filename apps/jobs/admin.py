from django.contrib import admin

from .models import BeatLock, JobRun
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
