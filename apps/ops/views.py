from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache

from . import services


@never_cache
@transaction.non_atomic_requests
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers HTTP. Nothing else is checked."""
    return JsonResponse({"status": "ok"})


@never_cache
@transaction.non_atomic_requests
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: database, cache, channel layer and broker all answer."""
    checks = services.readiness_checks()
    ready = all(c.ok for c in checks)
    return JsonResponse(
        {
            "status": "ok" if ready else "unavailable",
            "components": {
                c.name: {"status": c.status, "detail": c.detail} for c in checks
            },
        },
        status=200 if ready else 503,
    )
