"""The schema generator: drf-spectacular's, with the error answers every operation can
give (``REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]``).

Apart from :mod:`apps.core.schema`, which the API views import, because
``drf_spectacular.openapi`` is heavy (``rest_framework.test``, ``django.test``): DRF
builds the schema class only when a schema is generated.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiResponse

from .schema import ErrorSerializer

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
