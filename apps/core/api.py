"""Shared pieces of the REST management API.

Every error under ``/api/`` leaves as one shape, whether DRF raised it, a view did,
or no view was found::

    {"error": "world.invalid_config",          # a stable code, for scripts
     "detail": "$.world.id: is required",      # one line for people
     "problems": [{"path": "$.world.id", "message": "is required"}]}

``problems`` lists what is wrong with the request, each by its JSON path in the body
(empty when the error is not about the body). Every JSON body passes the rules of
:mod:`apps.core.validation` before a view sees it (:mod:`apps.core.parsers`); lists
are paged by :func:`paginated`; mutating calls are throttled by
:class:`apps.core.throttling.MutationThrottle`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.urls import Resolver404, resolve
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from .validation import json_path

Problems = Sequence[tuple[str, str]]

API_PREFIX = "/api/"


class ApiError(APIException):
    """Raise from a view: ``raise ApiError("world.unknown_world", "No world 'x'.", 404)``.

    ``problems`` are ``(json_path, message)`` pairs, as the validators return them.
    """

    def __init__(
        self,
        code: str,
        detail: str,
        status_code: int = status.HTTP_400_BAD_REQUEST,
        problems: Problems = (),
    ):
        super().__init__(detail=detail, code=code)
        self.status_code = status_code
        self.error_code = code
        self.problems = list(problems)


def error_body(code: str, detail: str, problems: Problems = ()) -> dict[str, Any]:
    """Return the API's error shape."""
    return {
        "error": code,
        "detail": detail,
        "problems": [{"path": path, "message": message} for path, message in problems],
    }


def joined(problems: Problems) -> str:
    """Return ``problems`` as one line: ``$.a: is required; $.b: is too long``."""
    return "; ".join(f"{path}: {message}" for path, message in problems)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, RequestDataTooBig):
        exc = ApiError(
            "too_large",
            f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} "
            "bytes, the most the API reads; send less at once.",
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # not an API exception: server_error() answers it
    code = getattr(exc, "error_code", None) or _code_of(exc)
    problems = list(getattr(exc, "problems", ()))
    if isinstance(exc, ValidationError):
        problems = _flatten(exc.detail)
        detail = joined(problems) or "The request is invalid."
    elif isinstance(exc, APIException):
        detail = str(exc.detail)
    else:  # Http404 and PermissionDenied from Django, which DRF converted
        detail = str(response.data.get("detail", response.data))
    response.data = error_body(code, detail, problems)
    return response


def _code_of(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "invalid"
    codes = getattr(exc, "get_codes", lambda: None)()
    if isinstance(codes, str):
        return codes
    return getattr(exc, "default_code", "error")


def _flatten(detail: Any, path: str = "$") -> list[tuple[str, str]]:
    """Return a ValidationError's nested detail as ``(json_path, message)`` pairs."""
    if isinstance(detail, dict):
        problems = []
        for key, value in detail.items():
            inner = path if key == api_settings.NON_FIELD_ERRORS_KEY else key
            if inner == path:
                child = path
            else:  # a ListField's errors are keyed by index
                child = json_path(path, inner if isinstance(inner, int) else str(inner))
            problems += _flatten(value, child)
        return problems
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return [(path, str(item)) for item in detail]
        problems = []
        for index, item in enumerate(detail):
            if item:  # a list of objects has {} for the valid ones
                problems += _flatten(item, json_path(path, index))
        return problems
    return [(path, str(detail))]


# Answers for what no DRF view handles
# ------------------------------------------------------------------------------


@csrf_exempt
def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """The answer to every unknown URL under /api/: a JSON 404, whatever the method."""
    detail = f"No API endpoint at {request.path}."
    if not request.path.endswith("/"):
        try:
            match = resolve(request.path + "/")
        except Resolver404:
            match = None
        if match is not None and match.func is not not_found:
            detail += f" Did you mean {request.path}/ (with the slash)?"
    else:
        detail += " GET /api/schema/ lists them; /api/docs/ shows them."
    return JsonResponse(error_body("not_found", detail), status=404)


def server_error(request: HttpRequest) -> Any:
    """handler500: the API's error shape under /api/, Django's page elsewhere."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse(
            error_body(
                "server_error",
                "The server failed to answer; the error is in its log.",
            ),
            status=500,
        )
    return defaults.server_error(request)


def bad_request(request: HttpRequest, exception: Exception) -> Any:
    """handler400 (a request Django itself refused): JSON under /api/."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse(
            error_body("bad_request", "The request could not be read."), status=400
        )
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> Any:
    """handler403 (Django's, not DRF's): JSON under /api/."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse(
            error_body("permission_denied", "You may not do this."), status=403
        )
    return defaults.permission_denied(request, exception)


# Paging
# ------------------------------------------------------------------------------


# An offset any database can take, with a page added to it.
MAX_OFFSET = 2**31 - 1


class Pagination(LimitOffsetPagination):
    """``?limit=`` (default 20, at most 1000) and ``?offset=``; answers ``count``,
    ``next``, ``previous`` and ``results``.

    Unlike DRF's, a limit or offset that is not a number in range is a 400 that
    says so, not silently the default.
    """

    default_limit = 20
    max_limit = 1000

    def get_limit(self, request: Request) -> int:
        return self._number(request, self.limit_query_param, 1, self.max_limit)

    def get_offset(self, request: Request) -> int:
        return self._number(request, self.offset_query_param, 0, MAX_OFFSET)

    def _number(self, request: Request, name: str, low: int, high: int) -> int:
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            return self.default_limit if name == self.limit_query_param else 0
        try:
            value = int(raw)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise ApiError(
                f"invalid_{name}", f"{name} is a whole number from {low} to {high}."
            )
        return value


def paginated(
    request: Request,
    view: Any,
    items: Iterable[Any],
    serializer_class: type[serializers.BaseSerializer],
    **extra: Any,
) -> Response:
    """Return one page of ``items`` serialized, with ``count`` and links."""
    pagination = (getattr(view, "pagination_class", None) or Pagination)()
    page = pagination.paginate_queryset(items, request, view=view)
    data = serializer_class(page, many=True).data
    response = pagination.get_paginated_response(data)
    if extra:
        response.data = {**extra, **response.data}
    return response
