import pytest

from apps.worlds import services


@pytest.fixture
def world(db):
    """A fresh world made the way create_world makes it."""
    return services.create_world("sample", "Sample World", "sample.example.org")
