from django.apps import AppConfig
from django.core.checks import Tags, register

from apps.backups.signals import rehearsal_checks

from .checks import placeholders_left


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
