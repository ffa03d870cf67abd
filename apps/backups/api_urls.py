from django.urls import path

from apps.core.urls import LazyView

urlpatterns = [
    path("", LazyView("apps.backups.api.BackupListView"), name="backups"),
    path("restore/", LazyView("apps.backups.api.RestoreView"), name="backups-restore"),
]
