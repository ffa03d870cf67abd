from django.urls import path

from .api import BackupListView, RestoreView

urlpatterns = [
    path("", BackupListView.as_view(), name="backups"),
    path("restore/", RestoreView.as_view(), name="backups-restore"),
]
