from django.apps import AppConfig


class ConnectionsConfig(AppConfig):
    name = "apps.connections"
    label = "connections"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from apps.accounts.models import Terms
        from apps.worlds.models import Room, World
        from apps.worlds.signals import world_changed

        from .snapshots import changed

        # What a server process keeps of worlds and terms (snapshots.py).
        for model in (World, Room, Terms):
            for signal in (post_save, post_delete):
                signal.connect(
                    changed, sender=model, dispatch_uid=f"snapshots-{model.__name__}"
                )
        world_changed.connect(changed, dispatch_uid="snapshots-world-changed")
