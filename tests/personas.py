"""The suite's personas, each defined once (as healthchecks' hc/test.py defines its).

A persona's name means the same people or world in every test that asks for it;
tests/conftest.py loads these fixtures for the whole suite.

- ``alice``: the operator, staff and superuser.
- ``api``: alice's API client (token authentication).
- ``bob``: a user with a login who is not staff.
- ``sample``: a fresh world, made the way ``create_world`` makes it.
- ``harbor``: the venueless-format example config (tests/worlds/world-config-
  example.json) imported: world 'harborconf', three rooms, exhibitors, no domain.
- ``harbor_live``: harbor as the WebSocket tests meet it: on harbor.example.org, with
  a Gallery whose listeners may only read the chat, and committed, so that consumers
  in any thread see it.
- ``harbor_search``: a small harbor for the search tests: two rooms (one a markdown
  page) and two attendees, one of them with a searchable and an unsearchable
  profile field.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apps.accounts.models import User
from apps.worlds import services
from apps.worlds.models import Room, World
from tests.helpers import api_client

# A copy of /work/shared/fixtures/world-config-example.json, so CI needs nothing else.
EXAMPLE_CONFIG = Path(__file__).parent / "worlds" / "world-config-example.json"

ALICE_PASSWORD = "correct horse battery"
BOB_PASSWORD = "tulip-river-91"


def example_config() -> dict:
    """The example config, read afresh (callers may change their copy)."""
    return json.loads(EXAMPLE_CONFIG.read_text())


def live_config() -> dict:
    """The example config on harbor.example.org, with a read-only Gallery."""
    config = example_config()
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


@pytest.fixture(name="example_config")
def example_config_fixture() -> dict:
    """The example config as data: harbor before it is imported."""
    return example_config()


@pytest.fixture(name="harbor_live_config")
def live_config_fixture() -> dict:
    """harbor_live's config as data (a test may change its copy and import it)."""
    return live_config()


@pytest.fixture
def alice(db):
    """Alice, the operator: staff and superuser."""
    return User.objects.create_superuser("alice", "alice@example.org", ALICE_PASSWORD)


@pytest.fixture
def api(alice):
    """Alice's API client, with a token of her own."""
    return api_client(alice)


@pytest.fixture
def bob(db):
    """Bob, a user with a login who is not staff (no admin, no API)."""
    return User.objects.create_user("bob", "bob@example.org", BOB_PASSWORD)


@pytest.fixture
def sample(db):
    """World 'sample', made the way create_world makes it."""
    return services.create_world("sample", "Sample World", "sample.example.org")


@pytest.fixture
def harbor(db):
    """World 'harborconf': the example config imported."""
    return services.import_config(example_config()).world


@pytest.fixture
def harbor_live(transactional_db):
    """World 'harborconf' on its domain with a read-only Gallery, committed."""
    return services.import_config(live_config()).world


@pytest.fixture
def harbor_search(db):
    """World 'harborconf' with two rooms (one a markdown page) and two attendees."""
    world = World.objects.create(
        id="harborconf",
        title="Harbor Conference",
        domain="harbor.example.org",
        config={
            "profile_fields": [
                {
                    "id": "org",
                    "label": "Organization",
                    "type": "text",
                    "searchable": True,
                },
                {"id": "phone", "label": "Phone", "type": "text", "searchable": False},
            ]
        },
    )
    Room.objects.create(
        world=world,
        import_id="main",
        name="Main Stage",
        description="Keynotes and plenary sessions",
        modules=[{"type": "livestream.native", "config": {"hls_url": "x"}}],
    )
    Room.objects.create(
        world=world,
        import_id="welcome",
        name="Welcome",
        description="Start here",
        modules=[
            {"type": "page.markdown", "config": {"content": "# Lighthouse tours daily"}}
        ],
    )
    User.objects.create(
        username="harborconf.1",
        world=world,
        token_id="1",
        display_name="Grace Hopper",
        profile={"org": "Navy Research", "phone": "5550199"},
    )
    User.objects.create(
        username="harborconf.2", world=world, token_id="2", display_name="Ada Lovelace"
    )
    return world
