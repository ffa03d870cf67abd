import re

from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path

from apps.core.api import not_found
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
    path(
        "api/redoc/",
        LazyView("drf_spectacular.views.SpectacularRedocView", url_name="api-schema"),
        name="api-redoc",
    ),
    # Last: any other URL under /api/ is a JSON 404, never Django's HTML page.
    re_path(r"^api/", not_found),
]

# Django's own error answers are JSON under /api/ too (its HTML pages elsewhere).
handler400 = "apps.core.api.bad_request"
handler403 = "apps.core.api.permission_denied"
handler500 = "apps.core.api.server_error"
