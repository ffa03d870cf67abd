"""The Celery application: jobs from every app, scheduled by django-celery-beat."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("stagehand")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
