"""The worlds API's routes: those SimpleRouter makes for WorldViewSet, spelled out so
that loading the URLs (every `check`) does not import the viewset (apps/core/urls.py).
tests/test_startup.py checks that they are the router's, name for name."""

from django.urls import re_path

from apps.core.urls import LazyRoute

ROUTER = "apps.worlds.api.router"
WORLD = r"(?P<id>[a-z0-9]+)"  # WorldViewSet.lookup_value_regex

ROUTES = [
    (r"^$", "world-list"),
    (r"^import/$", "world-import-config"),
    (rf"^{WORLD}/$", "world-detail"),
    (rf"^{WORLD}/clone/$", "world-clone"),
    (rf"^{WORLD}/export/$", "world-export"),
    (rf"^{WORLD}/token/$", "world-token"),
]

urlpatterns = [
    re_path(regex, LazyRoute(ROUTER, name), name=name) for regex, name in ROUTES
]
