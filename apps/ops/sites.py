"""Stagehand's admin site: Django's, with the operations page in its app list.

The index and the navigation sidebar both list ``get_app_list``; the operations page
is not a model, so it is added there as an app of its own, first.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse


class AdminSite(admin.AdminSite):
    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list:
        app_list = super().get_app_list(request, app_label)
        if app_label is None and request.user.is_active and request.user.is_staff:
            app_list.insert(0, operations_app())
        return app_list


def operations_app() -> dict:
    """The operations page as an app-list entry (the shape Django's templates read)."""
    url = reverse("admin-operations")
    return {
        "name": "Operations",
        "app_label": "ops",
        "app_url": url,
        "has_module_perms": True,
        "models": [
            {
                "name": "Components, connections, job runs and backups",
                "object_name": "Operations",
                "admin_url": url,
                "add_url": None,
                "view_only": True,
                "perms": {"view": True},
            }
        ],
    }
