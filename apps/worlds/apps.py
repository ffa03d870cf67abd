from django.apps import AppConfig


class WorldsConfig(AppConfig):
    name = "apps.worlds"
    label = "worlds"
