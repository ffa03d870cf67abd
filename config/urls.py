import re

from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path

from apps.core.urls import LazyView

# DJANGO_ADMIN_URL is literal text, not a route: a template's <placeholder> left in it
# must reach `check --deploy` (apps/ops/checks.py) instead of crashing URL loading.
ADMIN = re.escape(settings.ADMIN_URL)

urlpatterns = [
    re_path(rf"^{ADMIN}operations/", include("apps.ops.admin_urls")),
    re_path(rf"^{ADMIN}", admin.site.urls),
    path("", include("apps.ops.urls")),
    path("api/v1/", include("config.api_router")),
    # Imported on the first request: drf_spectacular.views is heavy (apps/core/urls.py).
    path(
        "api/schema/",
        LazyView("drf_spectacular.views.SpectacularAPIView"),
        name="api-schema",
    ),
    path(
        "api/docs/",
        LazyView("drf_spectacular.views.SpectacularSwaggerView", url_name="api-schema"),
        name="api-docs",
    ),
]
