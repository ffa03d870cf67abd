"""The REST management API under /api/v1/: each app contributes its routes here."""

from django.urls import include, path  # noqa: F401  (apps add include(...) lines)

app_name = "api"

urlpatterns: list = [
    path("worlds/", include("apps.worlds.api_urls")),
    path("users/", include("apps.accounts.api_urls")),
    path("search/", include("apps.search.api_urls")),
    path("jobs/", include("apps.jobs.api_urls")),
    path("connections/", include("apps.connections.api_urls")),
    path("stats/", include("apps.ops.api_urls")),
    path("backups/", include("apps.backups.api_urls")),
]
