"""The OpenAPI schema's shared parts: the error shape, and the error answers every
operation documents (``REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]``).

A module apart from :mod:`apps.core.api` so that drf-spectacular is imported only where
a schema is built or described.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ProblemSerializer(serializers.Serializer):
    path = serializers.CharField(
        help_text="where in the request body, as a JSON path: $.world.title"
    )
    message = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    """Every error under /api/, 404 and 405 included."""

    error = serializers.CharField(
        help_text="a stable code: not_found, invalid, throttled, world.invalid_config…"
    )
    detail = serializers.CharField(
        help_text="what went wrong and what to do, for people"
    )
    problems = ProblemSerializer(
        many=True, help_text="each problem of the request body (often empty)"
    )


def error(description: str) -> OpenApiResponse:
    """A documented error answer, for a view's ``extend_schema(responses=…)``."""
    return OpenApiResponse(ErrorSerializer, description=description)


MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's schema, with the error answers each operation can give."""

    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        errors = {
            "401": "no credentials: send `Authorization: Token <key>` "
            "(manage.py api_token create EMAIL)",
            "400": "the request is invalid; `problems` says where",
            "403": "the caller is not staff",
            "404": "no such object (or no such endpoint)",
            "503": "a service this call needs is unavailable",
        }
        if self.method in MUTATING:
            errors["413"] = "the body is larger than the API reads"
            errors["429"] = "too many changes; retry after the Retry-After header"
        for code, description in errors.items():
            if code not in responses:
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(ErrorSerializer, description=description),
                    code,
                    direction=direction,
                )
        return dict(sorted(responses.items()))
