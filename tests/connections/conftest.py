from __future__ import annotations

import copy
import shutil

import pytest

from apps.connections.registry import get_registry
from apps.worlds import services
from config.settings.base import redis_channel_layers
from tests.conftest import service_missing

from .helpers import Processes
from .server import PrivateRedis


@pytest.fixture(autouse=True)
def _own_channel_layer(settings):
    """A channel layer instance of this test's own.

    channels-redis binds its locks to the event loop that first waits on them; a
    server has one loop, but each test runs its own, and a receive cancelled when a
    test's loop ends can leave a lock behind for the next test's loop.
    """
    settings.CHANNEL_LAYERS = copy.deepcopy(settings.CHANNEL_LAYERS)


@pytest.fixture
def registry():
    """The configured registry, empty before and after the test."""
    registry = get_registry()
    registry.clear()
    yield registry
    registry.clear()


@pytest.fixture
def processes():
    """Stand-ins for server processes in labels' groups; they leave them at the end."""
    joined = Processes()
    yield joined
    joined.leave_all()


@pytest.fixture
def in_memory_layer(settings):
    """Embedded defaults: no Redis, the in-memory channel layer."""
    settings.REDIS_URL = ""
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    }


@pytest.fixture
def token(harbor_live):
    """Make a token for ``harbor``: token(traits, uid=None)."""

    def make(traits=("ticket",), uid=None) -> str:
        return services.generate_token(harbor_live, list(traits), uid=uid)

    return make


@pytest.fixture
def private_redis(settings):
    """A redis-server of the test's own; this process's commands use it too."""
    if shutil.which("redis-server") is None:
        service_missing("needs redis-server on PATH (apt-get install redis-server)")
    redis = PrivateRedis()
    redis.start()
    settings.REDIS_URL = redis.url
    settings.CHANNEL_LAYERS = redis_channel_layers(redis.url)
    yield redis
    redis.kill()
