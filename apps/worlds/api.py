"""The worlds part of the management API: list, detail, and the operator actions.

Each endpoint calls the same service as the matching management command. List and
detail never contain a JWT secret; export does, like export_config, because it is the
config file that import takes back.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from apps.accounts.models import User
from apps.core.api import ApiError, Pagination, joined, paginated
from apps.core.schema import error
from apps.core.validation import text_problem

from . import services
from .models import World
from .serializers import (
    CountsSerializer,
    ImportResultSerializer,
    TokenSerializer,
    WorldDetailSerializer,
    WorldSerializer,
)

# A token is valid for at most ten years; timedelta overflows long before 10^9 days.
MAX_TOKEN_DAYS = 3650
# Traits are stored as the attendee's JSON list; a bound keeps a token short.
MAX_TRAIT_LENGTH = 200


class NewWorldSerializer(serializers.Serializer):
    # The columns' lengths: a longer value is a 400 naming the field, not a 500.
    id = serializers.CharField(max_length=services.WORLD_ID_MAX)
    title = serializers.CharField(max_length=services.TITLE_MAX)
    domain = serializers.CharField(max_length=services.DOMAIN_MAX)


class CloneSerializer(NewWorldSerializer):
    new_secrets = serializers.BooleanField(default=False)


class TokenRequestSerializer(serializers.Serializer):
    traits = serializers.ListField(
        child=serializers.CharField(max_length=MAX_TRAIT_LENGTH), default=list
    )
    days = serializers.IntegerField(min_value=1, max_value=MAX_TOKEN_DAYS, default=90)
    # A uid longer than the attendee's column could never log in: not issued.
    uid = serializers.CharField(
        required=False, max_length=User._meta.get_field("token_id").max_length
    )


def _world(world_id: str) -> World:
    try:
        return services.get_world(world_id)
    except services.WorldNotFound:
        raise ApiError(
            "world.unknown_world", f"No world {world_id!r}.", status.HTTP_404_NOT_FOUND
        ) from None


def _valid(serializer_class: type[serializers.Serializer], data: Any) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class WorldViewSet(viewsets.ViewSet):
    """Worlds, for staff. Soft-deleted worlds appear in the list with ``?all=1``."""

    lookup_field = "id"
    lookup_value_regex = "[a-z0-9]+"
    pagination_class = Pagination

    @extend_schema(
        parameters=[
            OpenApiParameter("all", bool, description="include deleted"),
            OpenApiParameter(
                "search",
                str,
                description="only worlds whose id, title or domain "
                "contains this (case ignored)",
            ),
        ],
        responses=WorldSerializer(many=True),
    )
    def list(self, request: Request) -> Response:
        include_deleted = request.query_params.get("all", "").lower() in {"1", "true"}
        search = request.query_params.get("search", "")
        problem = text_problem(search)
        if problem:
            # PostgreSQL refuses NUL in text: a 500 otherwise.
            raise ApiError("world.bad_search", f"search {problem}.")
        worlds = services.list_worlds(include_deleted=include_deleted, search=search)
        return paginated(request, self, worlds, WorldSerializer)

    @extend_schema(responses=WorldDetailSerializer)
    def retrieve(self, request: Request, id: str) -> Response:
        return Response(WorldDetailSerializer(_world(id)).data)

    @extend_schema(request=NewWorldSerializer, responses={201: WorldDetailSerializer})
    def create(self, request: Request) -> Response:
        data = _valid(NewWorldSerializer, request.data)
        try:
            world = services.create_world(data["id"], data["title"], data["domain"])
        except services.WorldError as exc:
            raise ApiError("world.invalid", str(exc)) from exc
        return Response(WorldDetailSerializer(world).data, status=201)

    @extend_schema(
        parameters=[OpenApiParameter("dry_run", bool, description="change nothing")],
        responses={200: CountsSerializer},
    )
    def destroy(self, request: Request, id: str) -> Response:
        world = _world(id)
        dry_run = request.query_params.get("dry_run", "").lower() in {"1", "true"}
        counts = (
            services.deletion_counts(world) if dry_run else services.delete_world(world)
        )
        return Response(CountsSerializer({**counts, "dry_run": dry_run}).data)

    @extend_schema(request=CloneSerializer, responses={201: WorldDetailSerializer})
    @action(detail=True, methods=["post"])
    def clone(self, request: Request, id: str) -> Response:
        source = _world(id)
        data = _valid(CloneSerializer, request.data)
        try:
            world = services.clone_world(
                source,
                data["id"],
                data["title"],
                data["domain"],
                new_secrets=data["new_secrets"],
            )
        except services.WorldError as exc:
            raise ApiError("world.invalid", str(exc)) from exc
        return Response(WorldDetailSerializer(world).data, status=201)

    @extend_schema(responses={200: dict})
    @action(detail=True, methods=["get"])
    def export(self, request: Request, id: str) -> Response:
        return Response(services.export_config(_world(id)))

    @extend_schema(
        request=dict,
        responses={
            200: ImportResultSerializer,
            201: ImportResultSerializer,
            409: error("the world's id or domain is taken by another world"),
        },
    )
    @action(detail=False, methods=["post"], url_path="import")
    def import_config(self, request: Request) -> Response:
        try:
            result = services.import_config(request.data)
        except services.ConfigError as exc:
            raise ApiError(
                "world.invalid_config", joined(exc.problems), problems=exc.problems
            ) from exc
        except services.WorldError as exc:
            raise ApiError("world.invalid", str(exc), status.HTTP_409_CONFLICT) from exc
        return Response(
            ImportResultSerializer(result).data,
            status=201 if result.created else 200,
        )

    @extend_schema(request=TokenRequestSerializer, responses=TokenSerializer)
    @action(detail=True, methods=["post"])
    def token(self, request: Request, id: str) -> Response:
        world = _world(id)
        data = _valid(TokenRequestSerializer, request.data)
        try:
            token = services.generate_token(
                world, data["traits"], days=data["days"], uid=data.get("uid")
            )
        except services.WorldError as exc:
            raise ApiError("world.invalid", str(exc)) from exc
        url = services.token_url(world, token) if world.domain else None
        return Response(TokenSerializer({"token": token, "url": url}).data)


# Its routes, which api_urls.py spells out and reaches by name (apps/core/urls.py).
router = SimpleRouter()
router.register("", WorldViewSet, basename="world")
