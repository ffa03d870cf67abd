from django.apps import AppConfig
from django.core.checks import Tags, register

from .checks import placeholders_left


class OpsConfig(AppConfig):
    name = "apps.ops"
    label = "ops"

    def ready(self) -> None:
        register(placeholders_left, Tags.security, deploy=True)
