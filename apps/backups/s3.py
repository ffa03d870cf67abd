"""Backups in an S3 bucket (or an S3-compatible server), behind :class:`Storage`.

A module of its own so that botocore is imported only when ``STORAGES["backups"]`` is
S3 (:func:`apps.backups.storage.backup_storage`).
"""

from __future__ import annotations

import posixpath
import queue
import threading
import weakref
from collections.abc import Iterator
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from apps.core.secrets import mask_url

from .errors import BackupError, BackupNotFound
from .storage import CHUNK, PREFIX, Sink, Storage

# S3 parts: at least 5 MiB (all but the last), at most 10,000 of them. Parts grow
# with the upload so that memory stays bounded (two parts in flight at most) while a
# dump can still reach about 370 GB.
PART_SIZE = 8 * 1024 * 1024
MAX_PART_SIZE = 64 * 1024 * 1024
PARTS_PER_STEP = 2000

_MISSING_CODES = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}

# S3 ---------------------------------------------------------------------------

# One bounded client per storage object (storages are rebuilt when settings change).
_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


class S3(Storage):
    """A bucket on S3 or an S3-compatible server (django-storages' ``S3Storage``)."""

    is_s3 = True
    failures = (BotoCoreError, ClientError, OSError)

    @property
    def bucket(self) -> str:
        return self.django.bucket_name

    def key(self, name: str) -> str:
        location = (self.django.location or "").strip("/")
        return posixpath.join(location, name) if location else name

    @property
    def client(self):
        """An S3 client whose every call gives up in bounded time.

        botocore's defaults wait 60 s to connect and 60 s per read, retried up to
        five times: a server that accepts and never answers would hold a command for
        minutes. The storage's own client configuration is kept; only the bounds are
        added.
        """
        client = _clients.get(self.django)
        if client is None:
            config = self.django.client_config.merge(
                Config(
                    connect_timeout=settings.BACKUP_S3_CONNECT_TIMEOUT,
                    read_timeout=settings.BACKUP_S3_READ_TIMEOUT,
                    retries={
                        "mode": "standard",
                        "total_max_attempts": settings.BACKUP_S3_ATTEMPTS,
                    },
                )
            )
            # django-storages' own session: profile or keys, as it would choose them.
            client = self.django._create_session().client(
                "s3",
                region_name=self.django.region_name,
                use_ssl=self.django.use_ssl,
                endpoint_url=self.django.endpoint_url,
                config=config,
                verify=self.django.verify,
            )
            _clients[self.django] = client
            # Close its pooled connections with the storage, not whenever the
            # garbage collector gets to the sockets (a ResourceWarning each).
            weakref.finalize(self.django, client.close)
        return client

    def describe(self) -> str:
        endpoint = (
            mask_url(self.django.endpoint_url)
            if self.django.endpoint_url
            else f"AWS S3 in {self.django.region_name or 'the default region'}"
        )
        return f"S3 bucket s3://{self.bucket}/{self.key(PREFIX)} at {endpoint}"

    def advice(self) -> str:
        return (
            "check that the S3 server is up and reachable from this machine, and "
            "AWS_S3_ENDPOINT_URL, the credentials (AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY) and AWS_STORAGE_BUCKET_NAME"
        )

    def cleanup_note(self, leftover: str) -> str:
        if not leftover:
            return ""
        return (
            f" (cleaning up failed too: {leftover}; an unfinished multipart upload "
            "is never listed nor restored, and the bucket's "
            "AbortIncompleteMultipartUpload lifecycle rule removes its parts)"
        )

    def object_parameters(self, name: str) -> dict[str, Any]:
        """The storage's object parameters (server-side encryption among them)."""
        return dict(self.django.get_object_parameters(self.key(name)))

    def encryption(self) -> str:
        parameters = self.object_parameters(PREFIX)
        return parameters.get("ServerSideEncryption", "")

    def _probe(self) -> str:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _error_code(exc) not in _MISSING_CODES:
                raise
            return f"{self.describe()} (bucket created on first backup)"
        self.client.list_objects_v2(
            Bucket=self.bucket, Prefix=self.key(PREFIX), MaxKeys=1
        )
        return self.describe()

    def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist yet."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _error_code(exc) not in _MISSING_CODES:
                raise
            kwargs: dict[str, Any] = {}
            region = self.client.meta.region_name
            if region and region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
            self.client.create_bucket(Bucket=self.bucket, **kwargs)

    def exists(self, name: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key(name))
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                return False
            raise
        return True

    def size(self, name: str) -> int:
        return self.client.head_object(Bucket=self.bucket, Key=self.key(name))[
            "ContentLength"
        ]

    def delete(self, name: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key(name))

    def list_files(self) -> list[tuple[str, int]]:
        prefix = self.key(PREFIX)
        paginator = self.client.get_paginator("list_objects_v2")
        found = []
        try:
            for page in paginator.paginate(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/"
            ):
                for entry in page.get("Contents", ()):
                    found.append((entry["Key"][len(prefix) :], entry["Size"]))
        except ClientError as exc:
            if _error_code(exc) == "NoSuchBucket":
                return []
            raise
        return found

    def _read_chunks(self, name: str) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.key(name))[
                "Body"
            ]
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                raise BackupNotFound(f"{name} is not in the backup storage.") from exc
            raise
        try:
            yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    def open_sink(self, name: str) -> Sink:
        self.ensure_bucket()
        return _S3Sink(self, name)

    def write_object(self, name: str, data: bytes) -> None:
        self.client.put_object(
            Bucket=self.bucket,
            Key=self.key(name),
            Body=data,
            **{**self.object_parameters(name), "ContentType": "application/json"},
        )


class _S3Sink(Sink):
    """A multipart upload fed part by part; one part uploads while the next fills.

    The object does not exist under its key until ``commit`` completes the upload.
    """

    def __init__(self, storage: S3, name: str):
        self.client = storage.client
        self.bucket = storage.bucket
        self.key = storage.key(name)
        self.upload_id = self.client.create_multipart_upload(
            Bucket=self.bucket,
            Key=self.key,
            **{
                **storage.object_parameters(name),
                "ContentType": "application/octet-stream",
            },
        )["UploadId"]
        self.buffer = bytearray()
        self.number = 0
        self.parts: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self.thread = threading.Thread(target=self._upload_parts, daemon=True)
        self.thread.start()

    def _part_size(self) -> int:
        return min(PART_SIZE * 2 ** (self.number // PARTS_PER_STEP), MAX_PART_SIZE)

    def _upload_parts(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is not None:
                continue  # keep draining so the producer never blocks
            number, body = item
            try:
                etag = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self.upload_id,
                    PartNumber=number,
                    Body=body,
                )["ETag"]
                self.parts.append({"PartNumber": number, "ETag": etag})
            except BaseException as exc:  # noqa: BLE001 - re-raised by the producer
                self.error = exc

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def _send(self) -> None:
        self.number += 1
        body, self.buffer = self.buffer, bytearray()
        self.queue.put((self.number, body))

    def _stop_thread(self) -> None:
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()

    def write(self, data: bytes) -> None:
        self._check()
        self.buffer += data
        if len(self.buffer) >= self._part_size():
            self._send()

    def finish(self) -> None:
        if self.buffer or not self.number:
            self._send()
        self._stop_thread()
        self._check()

    def commit(self) -> None:
        if self.thread.is_alive():
            self.finish()
        self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={
                "Parts": sorted(self.parts, key=lambda p: p["PartNumber"])
            },
        )

    def abort(self) -> None:
        if self.error is None:
            self.error = BackupError("aborted")
        self._stop_thread()
        self.client.abort_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
        )
