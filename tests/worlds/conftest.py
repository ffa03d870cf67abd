import json
from pathlib import Path

import pytest

from apps.worlds import services

# A copy of /work/shared/fixtures/world-config-example.json, so CI needs nothing else.
FIXTURE = Path(__file__).parent / "world-config-example.json"


@pytest.fixture
def example_config() -> dict:
    """The venueless-format example config (world 'harborconf', 3 rooms, exhibitors)."""
    return json.loads(FIXTURE.read_text())


@pytest.fixture
def world(db):
    """A fresh world made the way create_world makes it."""
    return services.create_world("sample", "Sample World", "sample.example.org")


@pytest.fixture
def harbor(db, example_config):
    """The example config imported."""
    return services.import_config(example_config).world
