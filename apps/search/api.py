"""GET /api/v1/search/?q=… for staff: the same service as ``search query``."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import ApiError, Pagination, paginated
from apps.core.validation import text_problem
from apps.worlds import services as worlds

from . import services
from .serializers import HitSerializer

# The best this many matches are ranked, with their snippets, and paged through.
WINDOW = 200


class SearchPagination(Pagination):
    max_limit = WINDOW


class SearchView(APIView):
    """Search worlds, rooms and attendees; best matches first, with snippets.

    Query parameters: ``q`` (required), ``model`` (repeatable: worlds, rooms,
    attendees), ``world`` (a world ID); paged with ``limit`` and ``offset`` through
    the best 200 matches (``count`` says how many of those there are).
    """

    pagination_class = SearchPagination

    @extend_schema(
        parameters=[
            OpenApiParameter("q", str, required=True, description="words to find"),
            OpenApiParameter(
                "model", str, many=True, description="worlds, rooms or attendees"
            ),
            OpenApiParameter("world", str, description="only this world (its ID)"),
        ],
        responses=HitSerializer(many=True),
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
        # Checked before the search runs, not after it.
        SearchPagination().get_limit(request)
        SearchPagination().get_offset(request)
        try:
            hits = services.query(
                text,
                models=request.query_params.getlist("model") or None,
                world=world,
                limit=WINDOW,
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
        return paginated(request, self, hits, HitSerializer)
