from django.urls import path

from . import api

urlpatterns = [
    path("", api.JobListView.as_view(), name="jobs-list"),
    path("run/", api.RunJobView.as_view(), name="jobs-run"),
    path("schedule/", api.ScheduleView.as_view(), name="jobs-schedule"),
    path("unschedule/", api.UnscheduleView.as_view(), name="jobs-unschedule"),
    path("scheduled/", api.ScheduledView.as_view(), name="jobs-scheduled"),
    path("history/", api.HistoryView.as_view(), name="jobs-history"),
]
