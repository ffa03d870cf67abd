from __future__ import annotations

import pytest


@pytest.fixture
def registry():
    """The configured registry, empty before and after the test."""
    from apps.connections.registry import get_registry

    registry = get_registry()
    registry.clear()
    yield registry
    registry.clear()


@pytest.fixture
def in_memory_layer(settings):
    """Embedded defaults: no Redis, the in-memory channel layer."""
    settings.REDIS_URL = ""
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    }
