from django.apps import AppConfig


class ConnectionsConfig(AppConfig):
    name = "apps.connections"
    label = "connections"

    def ready(self) -> None:
        # Not at the top: apps.py is imported before the models exist, and the
        # snapshots import them (Django's rule for AppConfig modules, not start-up).
        from . import snapshots  # noqa: PLC0415

        snapshots.connect()
