"""AWS_S3_SSE: backups encrypted at rest on S3, checked on moto's server."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ImproperlyConfigured

from apps.core.environment import s3_encryption_parameters
from tests.helpers import call

from .conftest import SQLITE_ALIAS, sqlite_execute, sqlite_rows


def encrypt_with(settings, **parameters) -> None:
    backups = settings.STORAGES["backups"]
    settings.STORAGES = {
        **settings.STORAGES,
        "backups": {
            **backups,
            "OPTIONS": {**backups["OPTIONS"], "object_parameters": parameters},
        },
    }


@pytest.mark.parametrize(
    ("sse", "key_id"),
    [("AES256", ""), ("aws:kms", "arn:aws:kms:us-east-1:123456789012:key/stagehand")],
)
def test_every_object_of_a_backup_is_encrypted_and_says_so(
    sqlite_db, s3, settings, sse, key_id
):
    encrypt_with(settings, **s3_encryption_parameters(sse, key_id))
    data = json.loads(call("backup", "--database", SQLITE_ALIAS, "--json"))
    key = f"site-a/backup/{data['name']}"
    for object_key in (key, key + ".json"):
        head = s3.client.head_object(Bucket=s3.bucket, Key=object_key)
        assert head["ServerSideEncryption"] == sse
        if key_id:
            assert head["SSEKMSKeyId"] == key_id
    metadata = json.loads(
        s3.client.get_object(Bucket=s3.bucket, Key=key + ".json")["Body"].read()
    )
    assert metadata["encryption"] == sse

    # The verification record is encrypted too, and the backup still restores.
    before = sqlite_rows(sqlite_db)
    call("restore", "--verify", data["name"], "--database", SQLITE_ALIAS)
    head = s3.client.head_object(Bucket=s3.bucket, Key=key + ".verified.json")
    assert head["ServerSideEncryption"] == sse
    sqlite_execute(sqlite_db, "DELETE FROM note")
    call("restore", data["name"], "--database", SQLITE_ALIAS, "--noinput")
    assert sqlite_rows(sqlite_db) == before


def test_without_sse_the_metadata_says_none(sqlite_db, s3):
    data = json.loads(call("backup", "--database", SQLITE_ALIAS, "--json"))
    key = f"site-a/backup/{data['name']}.json"
    metadata = json.loads(
        s3.client.get_object(Bucket=s3.bucket, Key=key)["Body"].read()
    )
    assert metadata["encryption"] == ""


def test_the_settings_accept_only_what_s3_knows():
    assert s3_encryption_parameters("") == {}
    assert s3_encryption_parameters("AES256") == {"ServerSideEncryption": "AES256"}
    assert s3_encryption_parameters("aws:kms", "k1") == {
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "k1",
    }
    for bad in ("aes256", "AES256\x00", "\udcff", "kms"):
        with pytest.raises(ImproperlyConfigured, match="AES256 or aws:kms"):
            s3_encryption_parameters(bad)
    with pytest.raises(ImproperlyConfigured, match="needs AWS_S3_SSE=aws:kms"):
        s3_encryption_parameters("AES256", "k1")
    with pytest.raises(ImproperlyConfigured, match="AWS_S3_SSE is not"):
        s3_encryption_parameters("", "k1")
