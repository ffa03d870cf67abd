"""Signals of the worlds app, for the apps that keep something derived from worlds.

``world_changed`` is sent (with ``world_id``) when a world changes without a save
that Django's own ``post_save`` would announce (a soft delete is a queryset
``update()``); the connections' snapshots subscribe to it.
"""

from django.dispatch import Signal

world_changed = Signal()
