"""The operations page, under the admin's URL and behind its login."""

from django.contrib import admin
from django.urls import path

from .admin import operations_view

urlpatterns = [
    path("", admin.site.admin_view(operations_view), name="admin-operations"),
]
