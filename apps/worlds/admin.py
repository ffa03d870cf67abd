import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from apps.core.output import counted

from . import services
from .models import Room, World

# Columns of the world that are keys of the config document's "world" section.
COLUMN_FIELDS = ("domain", "locale", "timezone")
# Where a problem at a config-document path is shown on the form.
PATH_FIELDS = {
    "$.world.id": "id",
    "$.world.title": "title",
    "$.world.domain": "domain",
    "$.world.locale": "locale",
    "$.world.timezone": "timezone",
}
SECTION_FIELDS = {
    "$.world": "config",
    "$.roles": "roles",
    "$.trait_grants": "trait_grants",
}


def field_of(path: str) -> str:
    """Return the form field that shows a problem at the document path ``path``."""
    for prefix, name in PATH_FIELDS.items():
        if path == prefix or path.startswith((prefix + ".", prefix + "[")):
            return name
    for prefix, name in SECTION_FIELDS.items():
        if path == prefix or path.startswith((prefix + ".", prefix + "[")):
            return name
    return "extra"


class JSONField(forms.JSONField):
    """Django's JSON form field, which shows a lone surrogate (``"\\ud800"`` in the
    JSON typed) escaped: unescaped, it cannot be encoded into the page."""

    def prepare_value(self, value):
        text = super().prepare_value(value)
        if isinstance(text, str) and not isinstance(
            value, forms.fields.InvalidJSONInput
        ):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return json.dumps(value, cls=self.encoder)
        return text


class WorldForm(forms.ModelForm):
    """A world, checked by the validator of ``import_config``, with its JWT secrets
    masked: the config shows MASKED_SECRET, which keeps the stored secret on save."""

    class Meta:
        model = World
        fields = (
            "id",
            "title",
            "domain",
            "locale",
            "timezone",
            "config",
            "roles",
            "trait_grants",
            "extra",
            "deleted_at",
        )
        field_classes = {
            name: JSONField for name in ("config", "roles", "trait_grants", "extra")
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "config" in self.fields:
            self.initial["config"] = services.mask_secrets(self.initial.get("config"))
            self.fields["config"].help_text = (
                f"JWT secrets show as {services.MASKED_SECRET}: leave that to keep a "
                "secret, or write a new one (at least "
                f"{services.MIN_SECRET_LENGTH} characters)."
            )

    def clean(self) -> dict:
        cleaned = super().clean()
        config = cleaned.get("config")
        if "config" in cleaned:
            if not isinstance(config, dict):
                self.add_error("config", "$.world: must be an object")
                return cleaned
            stored = self.instance.config if self.instance.pk else {}
            config, problems = services.restore_secrets(config, stored)
            cleaned["config"] = config
            self._add_problems(problems)
        if self.errors:
            return cleaned  # a field already refused: its value is not in cleaned
        world_id = cleaned.get("id", self.instance.pk)
        document = services.config_document(
            world_id=world_id,
            title=(cleaned.get("title") or "").strip(),
            columns={k: cleaned[k] for k in COLUMN_FIELDS if cleaned.get(k)},
            config=cleaned.get("config", {}),
            roles=cleaned.get("roles", {}),
            trait_grants=cleaned.get("trait_grants", {}),
            extra=cleaned.get("extra", {}),
        )
        self._add_problems(services.validate_config(document))
        return cleaned

    def _add_problems(self, problems: list[tuple[str, str]]) -> None:
        for where, message in problems:
            name = field_of(where)
            self.add_error(name if name in self.fields else None, f"{where}: {message}")


class RoomInline(admin.TabularInline):
    model = Room
    fields = ("import_id", "name", "sorting_priority", "deleted_at")
    extra = 0
    show_change_link = True


@admin.register(World)
class WorldAdmin(admin.ModelAdmin):
    form = WorldForm
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
    change_form_template = "admin/worlds/world/change_form.html"
    delete_confirmation_template = "admin/worlds/world/delete_confirmation.html"

    @admin.display(description="JWT keys")
    def jwt_keys(self, world: World) -> str:
        # Issuer and audience only: a list page must never show a secret.
        entries = (world.config or {}).get("JWT_secrets") or []
        return ", ".join(
            f"{e.get('issuer')} → {e.get('audience')} (secret hidden)" for e in entries
        )

    def get_readonly_fields(self, request: HttpRequest, obj: World | None = None):
        # A changed primary key would save a second world, not rename this one.
        fields = super().get_readonly_fields(request, obj)
        return (*fields, "id") if obj is not None else fields

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

    # Delete: soft, as `delete_world` does; the purge job removes the rows later.

    def get_deleted_objects(self, objs, request: HttpRequest):
        """What the confirmation page lists: the counts `delete_world --dry-run`
        prints, instead of Django's cascade of rows it would delete now."""
        (world,) = objs
        counts = services.deletion_counts(world)
        summary = {
            "worlds": counted(counts["worlds"], "world"),
            "rooms": counted(counts["rooms"], "room"),
            "attendees": counted(counts["attendees"], "attendee"),
        }
        return [str(world)], summary, set(), []

    def delete_model(self, request: HttpRequest, obj: World) -> None:
        services.delete_world(obj)

    def response_delete(self, request: HttpRequest, obj_display: str, obj_id):
        response = super().response_delete(request, obj_display, obj_id)
        # Django's "was deleted successfully" would say more than happened.
        list(messages.get_messages(request))
        self.message_user(
            request,
            f"Soft-deleted {obj_display}: it is gone from attendees now, and the "
            "purge job removes it with its rooms and attendees for good.",
            messages.SUCCESS,
        )
        return response

    # Secrets: shown on demand, on a page of their own that nothing caches.

    def get_urls(self) -> list:
        reveal = self.admin_site.admin_view(self.reveal_secrets_view)
        return [
            path(
                "<path:object_id>/secrets/",
                reveal,
                name="worlds_world_secrets",
            ),
            *super().get_urls(),
        ]

    @method_decorator(never_cache)
    @method_decorator(require_POST)
    def reveal_secrets_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        world = get_object_or_404(World, pk=object_id)
        if not self.has_change_permission(request, world):
            raise PermissionDenied
        self.log_change(request, world, "Revealed the JWT secrets.")
        context = {
            **self.admin_site.each_context(request),
            "title": f"JWT secrets of {world}",
            "world": world,
            "opts": self.opts,
            "entries": (world.config or {}).get("JWT_secrets") or [],
            "change_url": reverse("admin:worlds_world_change", args=[world.pk]),
        }
        response = TemplateResponse(request, "admin/worlds/world/secrets.html", context)
        return response


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ("name", "world", "import_id", "sorting_priority", "deleted_at")
    list_filter = ("world",)
    search_fields = ("name", "import_id", "world__id")
    readonly_fields = ("updated_at",)
