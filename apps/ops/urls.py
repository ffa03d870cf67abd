from django.urls import path

from apps.core.urls import LazyView

from . import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    # Imported on the first scrape: prometheus-client is not every command's cost.
    path("metrics", LazyView("apps.ops.metrics.metrics_view"), name="metrics"),
]
