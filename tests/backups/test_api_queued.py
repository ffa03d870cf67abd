"""POST /api/v1/backups/ and /restore/ with a broker: queued as jobs, answered 202.

The API runs in a child process configured with the Redis broker (as a deployment
is), and a real `worker start` process does the work.
"""

from __future__ import annotations

import json

import pytest
from django.db import OperationalError, connections

from apps.accounts.models import User
from apps.jobs.models import JobRun
from tests.helpers import manage, wait_for

from .conftest import files_under

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

POST = """
import json, os
from django.test import Client
from apps.accounts.models import User
client = Client()
client.force_login(User.objects.get(username="alice"))
response = client.post(os.environ["TEST_URL"], json.loads(os.environ["TEST_BODY"]),
                       content_type="application/json")
print(response.status_code)
print(response.content.decode())
"""


@pytest.fixture
def broker_env(broker_env, backup_root):
    """The child processes' backups go to this test's folder too."""
    return {**broker_env, "STAGEHAND_VAR_DIR": str(backup_root.parent)}


def post(env: dict, url: str, body: dict) -> tuple[int, dict]:
    env = {**env, "TEST_URL": url, "TEST_BODY": json.dumps(body)}
    done = manage(env, "shell", "--no-imports", "-c", POST)
    assert done.returncode == 0, done.stderr
    status, content = done.stdout.strip().split("\n", 1)
    return int(status), json.loads(content)


def finished(pk: int) -> JobRun | None:
    try:
        return JobRun.objects.filter(pk=pk, outcome__in=["success", "failure"]).first()
    except OperationalError:  # the restore's swap ended this session: reconnect
        connections["default"].close()
        return None


def test_backup_and_restore_are_queued_and_run_by_a_worker(
    live, alice, broker_env, celery_worker, backup_root, settings
):
    settings.BACKUP_VERIFY = False  # the verification is tested elsewhere
    broker_env = {**broker_env, "BACKUP_VERIFY": "false"}
    status, body = post(broker_env, "/api/v1/backups/", {"database": "default"})
    assert status == 202, body
    assert body["job"] == "backup" and body["outcome"] == "queued"
    assert body["trigger"] == "api"
    run = wait_for(lambda: finished(body["id"]), "the worker to run the backup")
    assert run.outcome == "success", run.error
    name = run.result.split(" ", 1)[0]
    assert f"backup/{name}" in files_under(backup_root)

    User.objects.create_user("zoe", "zoe@example.org", "pw")
    status, body = post(broker_env, "/api/v1/backups/restore/", {"name": name})
    assert status == 400 and body["error"] == "backups.confirmation_required"
    status, body = post(
        broker_env, "/api/v1/backups/restore/", {"name": name, "confirm": name}
    )
    assert status == 202, body
    assert body["job"] == "restore" and body["kwargs"]["name"] == name
    # The restore's run is finished in the restored database, under its own id.
    run = wait_for(lambda: finished(body["id"]), "the worker to run the restore")
    assert run.outcome == "success", run.error
    assert f"Restored default from {name}" in run.result
    assert not User.objects.filter(username="zoe").exists()
