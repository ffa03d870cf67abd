"""Channels registered the way consumers and server processes register, and what they
received."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from apps.connections.services import label_group, register


async def _open(labels: dict[str, int]) -> dict[str, list[str]]:
    layer = get_channel_layer()
    opened: dict[str, list[str]] = {}
    for label, n in labels.items():
        for _ in range(n):
            channel = await layer.new_channel()
            await register(label, channel)
            opened.setdefault(label, []).append(channel)
    return opened


def open_channels(registry, labels: dict[str, int]) -> dict[str, list[str]]:
    """Register ``n`` fresh channel-layer channels under each label, as consumers do.

    They are counted, and reachable one by one (``--interval``); what reaches a whole
    label goes to its group, where server processes are (``process_channel``).
    """
    return async_to_sync(_open)(labels)


async def _join(label: str) -> str:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(label_group(label), channel)
    return channel


async def _leave(label: str, channel: str) -> None:
    await get_channel_layer().group_discard(label_group(label), channel)


class Processes:
    """Channels that stand for server processes: each in its label's group."""

    def __init__(self) -> None:
        self.joined: list[tuple[str, str]] = []

    def join(self, label: str) -> str:
        """Return a new channel in ``label``'s group, as a process's hub joins it."""
        channel = async_to_sync(_join)(label)
        self.joined.append((label, channel))
        return channel

    def leave_all(self) -> None:
        for label, channel in self.joined:
            async_to_sync(_leave)(label, channel)


async def read_inbox(channels: list[str]) -> dict[str, list[dict]]:
    """Return what each channel has received so far (on the running event loop)."""
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
    return async_to_sync(read_inbox)(channels)
