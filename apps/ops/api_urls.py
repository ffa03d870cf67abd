from django.urls import path

from apps.core.urls import LazyView

urlpatterns = [
    path("", LazyView("apps.ops.api.StatsView"), name="stats"),
]
