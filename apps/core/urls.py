"""URL helpers: views that are imported when first used, not when the URLs load.

Every ``manage.py`` command runs the system checks, which load the whole URLconf;
a view whose module pulls in a heavy library makes every command pay for it. The
OpenAPI schema views are the case in point: ``drf_spectacular.views`` imports the
schema generator, ``rest_framework.test`` and ``django.test`` (Jinja2 included),
about 45 ms of CPU of each command's start-up (docs/benchmarks.md, "Start-up").
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
