"""The REST API's throttle (DEFAULT_THROTTLE_CLASSES).

A module of its own, as :mod:`apps.core.parsers`: DRF's ``APIView`` reads the setting
when ``rest_framework.views`` is imported, so the class must not live beside code that
imports that module.
"""

from __future__ import annotations

import logging
from typing import Any

from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import UserRateThrottle

logger = logging.getLogger(__name__)


class MutationThrottle(UserRateThrottle):
    """At most ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["mutations"]`` calls that
    change something (POST, PUT, PATCH, DELETE) per user; reading is never throttled.

    Reads the rate when a request comes, not at import, so that a changed setting
    (and a test's override) takes effect.
    """

    scope = "mutations"

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def allow_request(self, request: Request, view: Any) -> bool:
        if request.method in SAFE_METHODS:
            return True
        try:
            return super().allow_request(request, view)
        except Exception:  # noqa: BLE001 - the cache is down: the API stays up
            logger.warning("API throttle skipped: the cache is unavailable")
            return True
