from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.core.output import counted

from . import services
from .models import Room, World


class RoomInline(admin.TabularInline):
    model = Room
    fields = ("import_id", "name", "sorting_priority", "deleted_at")
    extra = 0
    show_change_link = True


@admin.register(World)
class WorldAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "title",
        "domain",
        "jwt_keys",
        "locale",
        "timezone",
        "deleted_at",
    )
    search_fields = ("id", "title", "domain")
    list_filter = (("deleted_at", admin.EmptyFieldListFilter),)
    readonly_fields = ("created_at", "updated_at")
    inlines = [RoomInline]
    actions = ["soft_delete"]

    @admin.display(description="JWT keys")
    def jwt_keys(self, world: World) -> str:
        # Issuer and audience only: a list page must never show a secret.
        entries = (world.config or {}).get("JWT_secrets") or []
        return ", ".join(
            f"{e.get('issuer')} → {e.get('audience')} (secret hidden)" for e in entries
        )

    def get_actions(self, request: HttpRequest) -> dict:
        # Worlds are soft-deleted and purged by the purge job, never deleted in bulk here.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.action(description="Soft-delete the selected worlds (purged later)")
    def soft_delete(self, request: HttpRequest, queryset: QuerySet) -> None:
        worlds = list(queryset.filter(deleted_at__isnull=True))
        for world in worlds:
            services.delete_world(world)
        self.message_user(
            request, f"Soft-deleted {counted(len(worlds), 'world')}.", messages.SUCCESS
        )


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ("name", "world", "import_id", "sorting_priority", "deleted_at")
    list_filter = ("world",)
    search_fields = ("name", "import_id", "world__id")
    readonly_fields = ("updated_at",)
