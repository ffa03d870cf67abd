import pytest


@pytest.fixture
def world(sample):
    """The world most worlds tests work on: the sample persona."""
    return sample
