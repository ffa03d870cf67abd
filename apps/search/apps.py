from django.apps import AppConfig


class SearchConfig(AppConfig):
    name = "apps.search"
    label = "search"

    def ready(self) -> None:
        # Not at the top: apps.py is imported before the models exist, and the
        # signals import them (Django's rule for AppConfig modules, not start-up).
        from . import signals  # noqa: PLC0415

        signals.connect()
