"""Shared pieces of the REST management API.

Every error leaves the API as ``{"error": code, "detail": message}`` with a proper
status code, whether DRF raised it or a view did. Every JSON body passes the rules of
:mod:`apps.core.validation` before a view sees it (:mod:`apps.core.parsers`).
"""

from __future__ import annotations

from typing import Any

from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class ApiError(APIException):
    """Raise from a view: ``raise ApiError("world.unknown_world", "No world 'x'.", 404)``."""

    def __init__(
        self, code: str, detail: str, status_code: int = status.HTTP_400_BAD_REQUEST
    ):
        super().__init__(detail=detail, code=code)
        self.status_code = status_code
        self.error_code = code


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code = getattr(exc, "error_code", None) or _code_of(exc)
    detail = response.data if not isinstance(exc, ApiError) else str(exc.detail)
    if isinstance(detail, dict) and set(detail) == {"detail"}:
        detail = str(detail["detail"])
    response.data = {"error": code, "detail": detail}
    return response


def _code_of(exc: Exception) -> str:
    codes = getattr(exc, "get_codes", lambda: None)()
    if isinstance(codes, str):
        return codes
    return getattr(exc, "default_code", "error")
