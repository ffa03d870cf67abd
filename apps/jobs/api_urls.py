from django.urls import path

from apps.core.urls import LazyView

urlpatterns = [
    path("", LazyView("apps.jobs.api.JobListView"), name="jobs-list"),
    path("run/", LazyView("apps.jobs.api.RunJobView"), name="jobs-run"),
    path("schedule/", LazyView("apps.jobs.api.ScheduleView"), name="jobs-schedule"),
    path(
        "unschedule/", LazyView("apps.jobs.api.UnscheduleView"), name="jobs-unschedule"
    ),
    path("scheduled/", LazyView("apps.jobs.api.ScheduledView"), name="jobs-scheduled"),
    path("history/", LazyView("apps.jobs.api.HistoryView"), name="jobs-history"),
]
