"""GET /api/v1/search/?q=… for staff: the same service as ``search query``."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import ApiError
from apps.core.validation import text_problem
from apps.worlds import services as worlds

from . import services

MAX_LIMIT = 200


class HitSerializer(serializers.Serializer):
    model = serializers.CharField()
    id = serializers.CharField()
    world = serializers.CharField()
    title = serializers.CharField()
    snippet = serializers.CharField()
    rank = serializers.FloatField()


class SearchResultsSerializer(serializers.Serializer):
    query = serializers.CharField()
    results = HitSerializer(many=True)


class SearchView(APIView):
    """Search worlds, rooms and attendees; best matches first, with snippets.

    Query parameters: ``q`` (required), ``model`` (repeatable: worlds, rooms,
    attendees), ``world`` (a world ID), ``limit`` (1–200, default 20).
    """

    @extend_schema(
        parameters=[
            OpenApiParameter("q", str, required=True, description="words to find"),
            OpenApiParameter(
                "model", str, many=True, description="worlds, rooms or attendees"
            ),
            OpenApiParameter("world", str, description="only this world (its ID)"),
            OpenApiParameter("limit", int, description=f"1 to {MAX_LIMIT}, default 20"),
        ],
        responses=SearchResultsSerializer,
    )
    def get(self, request: Request) -> Response:
        text = request.query_params.get("q", "")
        problem = text_problem(text)
        if problem:
            # PostgreSQL refuses NUL in a query's text: a 500 otherwise.
            raise ApiError("search.bad_query", f"q {problem}.")
        world = request.query_params.get("world") or None
        problem = world and worlds.check_world_id(world)
        if problem:
            raise ApiError("search.bad_world", problem)
        try:
            limit = int(request.query_params.get("limit", "20"))
        except ValueError:
            raise ApiError(
                "search.bad_limit", "limit must be a whole number."
            ) from None
        if not 1 <= limit <= MAX_LIMIT:
            raise ApiError("search.bad_limit", f"limit must be 1 to {MAX_LIMIT}.")
        try:
            hits = services.query(
                text,
                models=request.query_params.getlist("model") or None,
                world=world,
                limit=limit,
            )
        except services.UnknownModel as exc:
            raise ApiError("search.unknown_model", str(exc)) from None
        except ValueError as exc:
            raise ApiError("search.bad_query", str(exc)) from None
        except services.IndexNotBuilt as exc:
            raise ApiError(
                "search.not_built", str(exc), status.HTTP_503_SERVICE_UNAVAILABLE
            ) from None
        except services.SearchUnavailable as exc:
            raise ApiError(
                "search.unavailable", str(exc), status.HTTP_503_SERVICE_UNAVAILABLE
            ) from None
        return Response({"query": text, "results": [h.as_dict() for h in hits]})
