"""REST: purging a user, the same service as ``purge_user``. Staff only."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import ApiError
from apps.core.schema import error

from . import services
from .serializers import PurgeReportSerializer


class PurgeRequestSerializer(serializers.Serializer):
    user = serializers.CharField(
        required=False, help_text="username or email (or give world and uid)"
    )
    world = serializers.CharField(required=False, help_text="the attendee's world id")
    uid = serializers.CharField(required=False, help_text="the attendee's token uid")
    dry_run = serializers.BooleanField(
        default=False, help_text="only report what would go"
    )


class PurgeUserView(APIView):
    """Forget a user (right to be forgotten), or with ``dry_run`` list what would go."""

    @extend_schema(
        request=PurgeRequestSerializer,
        responses={
            200: PurgeReportSerializer,
            409: error("the user cannot be purged (the last superuser, say)"),
        },
    )
    def post(self, request):
        params = PurgeRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        try:
            user = services.find_purge_target(
                data.get("user"), world=data.get("world"), uid=data.get("uid")
            )
        except services.UserNotFound as exc:
            raise ApiError("accounts.unknown_user", str(exc), 404) from exc
        except services.AccountError as exc:
            raise ApiError("accounts.invalid_request", str(exc), 400) from exc
        try:
            report = services.purge_user(user, dry_run=data["dry_run"])
        except services.AccountError as exc:
            raise ApiError("accounts.purge_refused", str(exc), 409) from exc
        return Response(
            PurgeReportSerializer(report, context={"user": user}).data,
            status=status.HTTP_200_OK,
        )
