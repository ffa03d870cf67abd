from django.db import DatabaseError, transaction
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
    """Readiness: database, cache, channel layer and broker all answer.

    Anyone may ask, so the answer is each component's status and nothing more; the
    detail (versions, masked service URLs, errors) is for a logged-in staff user, as
    ``info`` shows it on the command line.
    """
    checks = services.readiness_checks()
    ready = all(c.ok for c in checks)
    staff = is_staff(request)
    return JsonResponse(
        {
            "status": services.OK if ready else services.UNAVAILABLE,
            "components": {
                c.name: {"status": c.status, "detail": c.detail}
                if staff
                else {"status": c.status}
                for c in checks
            },
        },
        status=200 if ready else 503,
    )


def is_staff(request: HttpRequest) -> bool:
    """Whether a staff user asks; with the database down (its session unreadable),
    the caller is answered as anyone is, not with a 500."""
    try:
        return request.user.is_authenticated and request.user.is_staff
    except DatabaseError:
        return False
