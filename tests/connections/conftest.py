from __future__ import annotations

import json
from pathlib import Path

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


EXAMPLE = Path(__file__).parent.parent / "worlds" / "world-config-example.json"


@pytest.fixture
def harbor_config() -> dict:
    """The example world, on a domain, with a room where chat is read-only."""
    config = json.loads(EXAMPLE.read_text())
    config["world"]["domain"] = "harbor.example.org"
    config["roles"]["listener"] = ["room:view", "room:chat.read"]
    config["rooms"].append(
        {
            "id": "gallery",
            "name": "Gallery",
            "trait_grants": {"listener": []},
            "modules": [{"type": "chat.native", "config": {}}],
        }
    )
    return config


@pytest.fixture
def harbor(transactional_db, harbor_config):
    """World 'harborconf' imported (committed, so consumers in any thread see it)."""
    from apps.worlds import services

    return services.import_config(harbor_config).world


@pytest.fixture
def token(harbor):
    """Make a token for ``harbor``: token(traits, uid=None)."""
    from apps.worlds import services

    def make(traits=("ticket",), uid=None) -> str:
        return services.generate_token(harbor, list(traits), uid=uid)

    return make
