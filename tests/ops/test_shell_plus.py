"""shell_plus (django-extensions): every model, and each app's services under the
app's name, as docs/operations.md says; Django's own shell imports the models."""

from __future__ import annotations

import pytest

from tests.helpers import manage

CODE = (
    "print(World.__name__, Room.__name__, User.__name__, JobRun.__name__); "
    "print(worlds.create_world.__module__, accounts.__name__, backups.__name__, "
    "jobs.__name__, search.__name__, connections.__name__, ops.__name__); "
    "print(len(worlds.list_worlds()))"
)


@pytest.fixture
def migrated(child_env) -> dict:
    manage(child_env, "migrate", "-v", "0")
    return child_env


def test_shell_plus_imports_models_and_services(migrated):
    result = manage(migrated, "shell_plus", "--plain", "-c", CODE)
    lines = result.stdout.splitlines()
    assert "World Room User JobRun" in lines
    assert (
        "apps.worlds.services apps.accounts.services apps.backups.services "
        "apps.jobs.services apps.search.services apps.connections.services "
        "apps.ops.services"
    ) in lines
    assert lines[-1] == "0"
    assert "from apps.worlds import services as worlds" in result.stdout


def test_djangos_shell_imports_the_models(migrated):
    result = manage(migrated, "shell", "-c", "print(World.__name__, Room.__name__)")
    assert result.stdout.splitlines()[-1] == "World Room"
