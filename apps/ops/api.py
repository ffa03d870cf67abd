"""The ops part of the management API: ``/api/v1/stats/``, the same figures as
``manage.py stats --json``."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import services
from .serializers import StatsSerializer


class StatsView(APIView):
    """Every component of the backend with its status and figures.

    Always 200 when the checks ran: ``status`` says whether every configured
    component is ok (``/readyz`` is the endpoint whose status code says so).
    """

    @extend_schema(responses=StatsSerializer, operation_id="stats")
    def get(self, request: Request) -> Response:
        components = services.collect_stats()
        return Response(
            StatsSerializer(
                {
                    "status": services.OK
                    if all(c.ok for c in components)
                    else services.UNAVAILABLE,
                    "components": components,
                }
            ).data
        )
