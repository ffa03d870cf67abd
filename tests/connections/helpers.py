"""Channels registered the way consumers register, and what they received."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer


async def _open(labels: dict[str, int]) -> dict[str, list[str]]:
    from apps.connections.services import register

    layer = get_channel_layer()
    opened: dict[str, list[str]] = {}
    for label, n in labels.items():
        for _ in range(n):
            channel = await layer.new_channel()
            await register(layer, label, channel)
            opened.setdefault(label, []).append(channel)
    return opened


def open_channels(registry, labels: dict[str, int]) -> dict[str, list[str]]:
    """Register ``n`` fresh channel-layer channels under each label, as consumers do."""
    return async_to_sync(_open)(labels)


async def _inbox(channels: list[str]) -> dict[str, list[dict]]:
    layer = get_channel_layer()
    received: dict[str, list[dict]] = {}
    for channel in channels:
        # Everything sent before this marker arrives before it: no waiting on silence.
        await layer.send(channel, {"type": "test.end"})
        received[channel] = []
        while (message := await layer.receive(channel))["type"] != "test.end":
            received[channel].append(message)
    return received


def inbox(channels: list[str]) -> dict[str, list[dict]]:
    """Return what each channel has received so far."""
    return async_to_sync(_inbox)(channels)
