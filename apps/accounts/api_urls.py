from django.urls import path

from .api import PurgeUserView

urlpatterns = [
    path("purge/", PurgeUserView.as_view(), name="users-purge"),
]
