from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.core.checks import Tags, register

from .checks import log_format_check, placeholders_left


class OpsConfig(AppConfig):
    name = "apps.ops"
    label = "ops"

    def ready(self) -> None:
        register(placeholders_left, Tags.security, deploy=True)
        register(log_format_check)


class AdminConfig(admin_apps.AdminConfig):
    """Django's admin on Stagehand's site (the operations page in its app list)."""

    default = False  # "apps.ops" means OpsConfig; this one is named in full
    default_site = "apps.ops.sites.AdminSite"
