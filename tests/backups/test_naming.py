"""Backup names never collide, and a backup is visible only once it is complete."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import database_url

from .conftest import bucket_keys


def backup_process(env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "backup"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.postgres
@pytest.mark.django_db
def test_concurrent_backup_processes_all_succeed_with_different_names(base_env, s3):
    env = {
        **base_env,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url(),
        "AWS_STORAGE_BUCKET_NAME": s3.bucket,
        "AWS_S3_ENDPOINT_URL": s3.endpoint,
        "AWS_S3_REGION_NAME": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    s3.client.create_bucket(Bucket=s3.bucket)
    # Three at once: at least two of them start their dump within the same second.
    children = [backup_process(env) for _ in range(3)]
    results = [(child.wait(timeout=120), *child.communicate()) for child in children]
    for returncode, out, err in results:
        assert returncode == 0, out + err
    names = [out.split(" to ", 1)[1].split(" ", 1)[0] for _, out, _ in results]
    assert len(set(names)) == 3, names
    assert bucket_keys(s3) == sorted(
        f"backup/{name}{suffix}" for name in names for suffix in ("", ".json")
    )
    for name in names:
        metadata = json.loads(
            s3.client.get_object(Bucket=s3.bucket, Key=f"backup/{name}.json")[
                "Body"
            ].read()
        )
        assert metadata["name"] == name
