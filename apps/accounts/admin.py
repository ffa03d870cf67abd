from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import Count
from django.template.response import TemplateResponse

from apps.core.output import counted

from . import services
from .models import Terms, TermsAcceptance, User


class PurgedFilter(admin.SimpleListFilter):
    title = "purged"
    parameter_name = "purged"

    def lookups(self, request, model_admin):
        return [("no", "No"), ("yes", "Yes")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(deleted_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(deleted_at__isnull=True)
        return queryset


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = (
        "username",
        "email",
        "display_name",
        "world",
        "is_staff",
        "is_active",
    )
    list_filter = ("world", "is_staff", "is_superuser", "is_active", PurgedFilter)
    list_select_related = ("world",)
    search_fields = ("username", "email", "display_name", "token_id")
    fieldsets = DjangoUserAdmin.fieldsets + (
        (
            "Attendee",
            {
                "fields": (
                    "world",
                    "token_id",
                    "display_name",
                    "traits",
                    "profile",
                    "avatar",
                    "deleted_at",
                )
            },
        ),
    )
    actions = ["purge_users", "grant_admin", "revoke_admin"]

    def has_delete_permission(self, request, obj=None) -> bool:
        # Deleting a row would take others' chat history with it; purging is the way.
        return False

    @admin.action(description="Purge selected users (right to be forgotten)")
    def purge_users(self, request, queryset):
        users = list(queryset.order_by("pk"))
        if request.POST.get("confirmed") != "yes":
            plans, refused = [], []
            for user in users:
                try:
                    plans.append(services.purge_user(user, dry_run=True))
                except services.AccountError as exc:
                    refused.append(str(exc))
            context = {
                **self.admin_site.each_context(request),
                "title": "Purge users?",
                "opts": self.model._meta,
                "plans": plans,
                "refused": refused,
                "users": users,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(
                request, "admin/accounts/user/purge_confirmation.html", context
            )
        for user in users:
            try:
                report = services.purge_user(user)
            except services.AccountError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            self.message_user(
                request, f"Purged user {report.label}: {report.summary()}."
            )
        return None

    @admin.action(description="Give admin rights (staff and superuser)")
    def grant_admin(self, request, queryset):
        self._set_rights(request, queryset, revoke=False)

    @admin.action(description="Remove admin rights")
    def revoke_admin(self, request, queryset):
        self._set_rights(request, queryset, revoke=True)

    def _set_rights(self, request, queryset, *, revoke: bool) -> None:
        done = 0
        for user in queryset:
            try:
                services.set_admin_rights(user, revoke=revoke)
                done += 1
            except services.AccountError as exc:
                self.message_user(request, str(exc), messages.ERROR)
        self.message_user(request, f"Rights changed for {counted(done, 'user')}.")


@admin.register(Terms)
class TermsAdmin(admin.ModelAdmin):
    list_display = (
        "slug",
        "version",
        "name",
        "required",
        "active_from",
        "acceptance_count",
    )
    list_filter = ("slug", "required")
    search_fields = ("slug", "name", "version")
    readonly_fields = ("created_at",)

    def get_readonly_fields(self, request, obj=None):
        # Once someone accepted a version, what they accepted must stay as it was:
        # a changed text is a new version (import_terms).
        if obj is not None and obj.acceptances.exists():
            return ("slug", "version", "text", "created_at")
        return self.readonly_fields

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_acceptances=Count("acceptances"))

    @admin.display(description="acceptances", ordering="_acceptances")
    def acceptance_count(self, obj) -> int:
        return obj._acceptances


@admin.register(TermsAcceptance)
class TermsAcceptanceAdmin(admin.ModelAdmin):
    list_display = ("user", "terms_slug", "terms_version", "accepted_at")
    list_filter = ("terms__slug", "terms__version")
    search_fields = ("user__username", "user__email", "terms__slug")
    list_select_related = ("user", "terms")
    date_hierarchy = "accepted_at"

    # A record of consent: what it says is never edited by hand.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="terms", ordering="terms__slug")
    def terms_slug(self, obj) -> str:
        return obj.terms.slug

    @admin.display(description="version", ordering="terms__version")
    def terms_version(self, obj) -> str:
        return obj.terms.version
