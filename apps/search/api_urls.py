from django.urls import path

from apps.core.urls import LazyView

urlpatterns = [path("", LazyView("apps.search.api.SearchView"), name="search")]
