from django.urls import path

from .api import ConnectionListView, DropView, ForceReloadView

urlpatterns = [
    path("", ConnectionListView.as_view(), name="connections"),
    path("drop/", DropView.as_view(), name="connections-drop"),
    path("force_reload/", ForceReloadView.as_view(), name="connections-force-reload"),
]
