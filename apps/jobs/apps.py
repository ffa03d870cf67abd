from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class JobsConfig(AppConfig):
    name = "apps.jobs"
    label = "jobs"

    def ready(self) -> None:
        # Register every app's jobs in every process, not only in Celery workers.
        autodiscover_modules("tasks")
