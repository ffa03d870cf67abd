"""The OpenAPI schema's shared parts: the error shape, for the views' ``extend_schema``.

The schema generator itself (``REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]``) is in
:mod:`apps.core.autoschema`: ``drf_spectacular.openapi`` imports ``rest_framework.test``
and ``django.test``, about 45 ms of every command's start-up when the URL check loads
the API views (bench/startup.py), and only a schema needs it.
"""

from __future__ import annotations

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
