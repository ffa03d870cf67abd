from django.urls import path

from apps.core.urls import LazyView

urlpatterns = [
    path("", LazyView("apps.connections.api.ConnectionListView"), name="connections"),
    path("drop/", LazyView("apps.connections.api.DropView"), name="connections-drop"),
    path(
        "force_reload/",
        LazyView("apps.connections.api.ForceReloadView"),
        name="connections-force-reload",
    ),
]
