"""The shapes of backups and restores: what the API answers, what ``backups --json``
prints and what the OpenAPI schema documents, defined once."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from . import services


class BackupSerializer(serializers.Serializer):
    name = serializers.CharField()
    engine = serializers.CharField()
    size = serializers.IntegerField(help_text="bytes")
    created = serializers.DateTimeField()
    compressed = serializers.BooleanField(
        allow_null=True, help_text="null: a dump whose metadata is unreadable"
    )
    state = serializers.ChoiceField(
        choices=[services.COMPLETE, services.INCOMPLETE, services.DAMAGED],
        help_text="only a complete backup restores (and counts for retention)",
    )
    problem = serializers.CharField(
        allow_blank=True, help_text="why it is not complete, or empty"
    )
    verified = serializers.ChoiceField(
        choices=[services.VERIFIED_OK, services.VERIFIED_FAILED, services.NOT_VERIFIED],
        help_text="the outcome of its last rehearsal (restore --verify)",
    )
    verified_at = serializers.DateTimeField(allow_null=True)
    verify_problem = serializers.CharField(
        allow_blank=True, help_text="why its rehearsal failed, or empty"
    )


class RestoreResultSerializer(serializers.Serializer):
    backup = BackupSerializer()
    database = serializers.CharField()
    previous = serializers.CharField(
        allow_blank=True, help_text="where the database live before is kept"
    )
    drop_hint = serializers.CharField(allow_blank=True)
    dry_run = serializers.BooleanField()
    rehearsal = serializers.SerializerMethodField(
        help_text="with dry_run: what the rehearsal showed"
    )
    interrupted = serializers.IntegerField(
        help_text="runs left running in the backup, marked as interrupted"
    )

    @extend_schema_field({"type": "object", "nullable": True})
    def get_rehearsal(self, result) -> dict | None:
        return result.rehearsal.as_dict() if result.rehearsal else None
