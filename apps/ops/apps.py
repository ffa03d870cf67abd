from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.core.checks import Tags, register

from apps.backups.signals import rehearsal_checks

from .checks import log_format_check, placeholders_left


class OpsConfig(AppConfig):
    name = "apps.ops"
    label = "ops"

    def ready(self) -> None:
        register(placeholders_left, Tags.security, deploy=True)
        # A backup's rehearsal runs check_integrity on the restored copy. Imported
        # here: integrity.py imports models, which need the ready app registry.
        from .integrity import rehearsal_problems  # noqa: PLC0415

        rehearsal_checks.connect(
            rehearsal_problems, dispatch_uid="ops.integrity.rehearsal"
        )
        register(log_format_check)


class AdminConfig(admin_apps.AdminConfig):
    """Django's admin on Stagehand's site (the operations page in its app list)."""

    default = False  # "apps.ops" means OpsConfig; this one is named in full
    default_site = "apps.ops.sites.AdminSite"
