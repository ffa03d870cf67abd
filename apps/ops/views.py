from django.conf import settings
from django.db import DatabaseError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import metrics, services


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
    staff = _is_staff(request)
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


def _is_staff(request: HttpRequest) -> bool:
    """Whether a staff user asks; with the database down (its session unreadable),
    the caller is answered as anyone is, not with a 500."""
    try:
        return request.user.is_authenticated and request.user.is_staff
    except DatabaseError:
        return False


@never_cache
@require_safe
@transaction.non_atomic_requests
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus' scrape: for the METRICS_TOKEN bearer token, or a staff user."""
    header = request.headers.get("Authorization", "")
    if not metrics.token_matches(header) and not _is_staff(request):
        how = (
            "send the header Authorization: Bearer <METRICS_TOKEN>"
            if settings.METRICS_TOKEN
            else "set METRICS_TOKEN and send it as Authorization: Bearer <token>"
        )
        response = HttpResponse(
            f"/metrics needs a token: {how}, or log in to the admin as staff.\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(
        generate_latest(metrics.REGISTRY), content_type=CONTENT_TYPE_LATEST
    )
