from django.urls import path

from apps.core.urls import LazyView

urlpatterns = [
    path("purge/", LazyView("apps.accounts.api.PurgeUserView"), name="users-purge"),
]
