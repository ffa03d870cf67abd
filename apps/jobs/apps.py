from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate
from django.utils.module_loading import autodiscover_modules


class JobsConfig(AppConfig):
    name = "apps.jobs"
    label = "jobs"

    def ready(self) -> None:
        # Register every app's jobs in every process, not only in Celery workers.
        autodiscover_modules("tasks")
        post_migrate.connect(install_default_schedules, sender=self)


def install_default_schedules(using: str = "default", **kwargs) -> None:
    """After migrate (and test flushes): install the default job schedules."""
    # Not at the top: apps.py is imported before the models exist, and the
    # services import them (Django's rule for AppConfig modules, not start-up).
    from . import services  # noqa: PLC0415

    # A partial migrate may run before django-celery-beat's tables exist.
    if (
        "django_celery_beat_periodictask"
        not in connections[using].introspection.table_names()
    ):
        return
    services.install_default_schedules()
