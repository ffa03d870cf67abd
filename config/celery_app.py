"""The Celery application: jobs from every app, scheduled by django-celery-beat."""

import os

from celery import Celery, signals
from django.conf import settings
from django.utils.log import configure_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("stagehand")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.setup_logging.connect
def use_django_logging(**kwargs) -> None:
    """Log as every other process does (settings.LOGGING, LOG_FORMAT), not in
    Celery's own format: with a receiver here, Celery configures no logging itself.
    Django's own function, so warnings are logged too (Celery warns as a record)."""
    configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)
