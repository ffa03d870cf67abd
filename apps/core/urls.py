"""URL helpers: views that are imported when first used, not when the URLs load.

``manage.py check`` (and every command that runs the system checks) loads the whole
URLconf; a view whose module pulls in a heavy library makes each of them pay for it.
The API's views are the case in point: their ``@extend_schema`` decorators import
drf-spectacular's schema generator, which imports ``rest_framework.test`` and
``django.test`` (Jinja2 included), and the schema views import it too: about 90 ms
of CPU of a ``check`` (docs/benchmarks.md, "Start-up"). So every API route names its
view by path (:class:`LazyView`, :class:`LazyRoute`), and the view's module is
imported on the first request, or when a schema is generated.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string


class LazyView:
    """The view ``ViewClass.as_view(**initkwargs)`` (or a view function), built on
    first use.

    It answers requests as that view does, and every other attribute (DRF's ``cls``
    and ``initkwargs`` that schema generators read, ``csrf_exempt``, ``view_class``)
    is the real view's, so reading one imports the view too.
    """

    def __init__(self, view_class: str, **initkwargs: Any) -> None:
        self._view_class = view_class
        self._initkwargs = initkwargs

    @cached_property
    def _view(self) -> Any:
        view = import_string(self._view_class)
        return view.as_view(**self._initkwargs) if hasattr(view, "as_view") else view

    def __call__(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self._view(request, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # Only called for what the instance lacks. Private and dunder names stay
        # missing (copy, pickle and functools.wraps probe for them), so that
        # looking one up never imports the view.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._view, name)

    def __repr__(self) -> str:
        return f"<LazyView {self._view_class}>"


class LazyRoute(LazyView):
    """The view of the route named ``name`` of the DRF router at ``router`` (a dotted
    path), built on first use: a viewset's routes without importing the viewset.

    The URL patterns are then spelled out beside it (the router makes them from the
    viewset's methods); tests/test_startup.py checks that they are the router's.
    """

    def __init__(self, router: str, name: str) -> None:
        super().__init__(router)
        self._name = name

    @cached_property
    def _view(self) -> Any:
        routes = {
            url.name: url.callback for url in import_string(self._view_class).urls
        }
        return routes[self._name]

    def __repr__(self) -> str:
        return f"<LazyRoute {self._view_class} {self._name}>"
