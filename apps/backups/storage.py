"""Where backups are kept: a local folder or an S3 bucket, behind one interface.

``backup_storage()`` wraps ``storages["backups"]`` in a :class:`Folder` or an
:class:`S3`; the rest of the app calls only the methods of :class:`Storage` and never
asks which one it has. Names are paths relative to the storage (``backup/…``).

Writing goes through a *sink* that keeps the bytes out of sight until ``commit``: a
hidden ``.<name>.<random>.part`` file renamed into place, or an S3 multipart upload
that is no object until it is completed (parts bounded in size and in flight, so
memory stays flat whatever the size of the dump). Every failure of the storage itself
is a ``StorageUnavailable`` naming the storage, its endpoint and what to check; S3
calls have bounded timeouts and retries, so nothing waits forever.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import queue
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.files.storage import storages

from apps.core.secrets import mask_url

from .errors import BackupError, BackupNotFound, StorageUnavailable, describe

PREFIX = "backup/"
CHUNK = 1024 * 1024
# S3 parts: at least 5 MiB (all but the last), at most 10,000 of them. Parts grow
# with the upload so that memory stays bounded (two parts in flight at most) while a
# dump can still reach about 370 GB.
PART_SIZE = 8 * 1024 * 1024
MAX_PART_SIZE = 64 * 1024 * 1024
PARTS_PER_STEP = 2000

ProgressCallback = Callable[[int], None]

_MISSING_CODES = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}


class Storage:
    """The operations backups need from a storage; see :class:`Folder` and :class:`S3`."""

    is_s3 = False

    def __init__(self, django_storage: Any):
        self.django = django_storage

    def describe(self) -> str:
        """Return where backups go: the bucket, prefix and endpoint, or the folder."""
        raise NotImplementedError

    def advice(self) -> str:
        """Return what to check when the storage does not answer."""
        raise NotImplementedError

    def unavailable(
        self, doing: str, exc: BaseException, then: str
    ) -> StorageUnavailable:
        return StorageUnavailable(
            f"the backup storage is not reachable while {doing}: {self.describe()} "
            f"({describe(exc)}); {self.advice()}, then {then}."
        )

    @contextmanager
    def errors(self, doing: str, then: str) -> Iterator[None]:
        """Turn a failure of the storage itself into a StorageUnavailable saying so."""
        try:
            yield
        except (BotoCoreError, ClientError, OSError) as exc:
            raise self.unavailable(doing, exc, then) from exc

    def cleanup_note(self, leftover: str) -> str:
        """Return the part of a message saying that a cleanup failed, or ''."""
        return f" (cleaning up failed too: {leftover})" if leftover else ""

    def probe(self) -> str:
        """Check that the storage answers; return where it is.

        Raise StorageUnavailable when it does not.
        """
        with self.errors("checking it", "run the check again"):
            return self._probe()

    def _probe(self) -> str:
        raise NotImplementedError

    def exists(self, name: str) -> bool:
        raise NotImplementedError

    def size(self, name: str) -> int:
        raise NotImplementedError

    def delete(self, name: str) -> None:
        raise NotImplementedError

    def delete_quietly(self, name: str) -> str:
        """Delete ``name``; return why that failed, or an empty string."""
        try:
            self.delete(name)
        except Exception as exc:  # noqa: BLE001 - the caller reports it with its own error
            return describe(exc)
        return ""

    def list_files(self) -> list[tuple[str, int]]:
        """Return (file name, size) of every object directly under ``backup/``."""
        raise NotImplementedError

    def read_chunks(self, name: str) -> Iterator[bytes]:
        """Yield the bytes of ``name`` in chunks, never the whole object at once.

        Raise BackupNotFound when it is missing, StorageUnavailable when the storage
        fails, before or while the bytes arrive.
        """
        try:
            yield from self._read_chunks(name)
        except (BotoCoreError, ClientError, OSError) as exc:
            raise self.unavailable(
                f"reading {name}", exc, "run the command again"
            ) from exc

    def _read_chunks(self, name: str) -> Iterator[bytes]:
        raise NotImplementedError

    def open_sink(self, name: str) -> Sink:
        """Return a sink writing ``name`` out of sight until its ``commit``."""
        raise NotImplementedError

    def write_object(self, name: str, data: bytes) -> None:
        """Write a small object at once (one request on S3, a rename in a folder)."""
        sink = self.open_sink(name)
        try:
            sink.write(data)
            sink.commit()
        except BaseException:
            abort_quietly(sink)
            raise

    def encryption(self) -> str:
        """Return how objects are encrypted at rest by the storage, or ''."""
        return ""

    def local_path(self, name: str) -> Path | None:
        """Return the file holding ``name`` when it is on this machine's disk."""
        return None


class Sink:
    """Bytes on their way to a name: ``write``…, ``finish``, then ``commit`` or ``abort``."""

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Make every byte durable; the object is still invisible."""
        raise NotImplementedError

    def commit(self) -> None:
        """Publish the object under its final name."""
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


def abort_quietly(sink: Sink) -> str:
    """Abort ``sink``; return why that failed, or an empty string."""
    try:
        sink.abort()
    except Exception as exc:  # noqa: BLE001 - the original error matters more
        return describe(exc)
    return ""


# A local folder ---------------------------------------------------------------


class Folder(Storage):
    """A folder on this machine (``FileSystemStorage``)."""

    def describe(self) -> str:
        return f"the folder {getattr(self.django, 'location', '?')}/{PREFIX}"

    def advice(self) -> str:
        return "check that the folder exists and that this user may read and write it"

    def _probe(self) -> str:
        folder = Path(self.django.path(PREFIX))
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
        return self.describe()

    def exists(self, name: str) -> bool:
        return self.django.exists(name)

    def size(self, name: str) -> int:
        return self.django.size(name)

    def delete(self, name: str) -> None:
        self.django.delete(name)

    def list_files(self) -> list[tuple[str, int]]:
        try:
            _dirs, files = self.django.listdir(PREFIX.rstrip("/"))
        except FileNotFoundError:
            return []
        return [(name, self.django.size(PREFIX + name)) for name in files]

    def _read_chunks(self, name: str) -> Iterator[bytes]:
        try:
            fh = self.django.open(name, "rb")
        except FileNotFoundError as exc:
            raise BackupNotFound(f"{name} is not in the backup storage.") from exc
        with fh:
            while chunk := fh.read(CHUNK):
                yield chunk

    def open_sink(self, name: str) -> Sink:
        return _FolderSink(Path(self.django.path(name)))

    def local_path(self, name: str) -> Path | None:
        return Path(self.django.path(name))


class _FolderSink(Sink):
    """Write to a hidden temporary file beside the target, renamed into place."""

    def __init__(self, final: Path):
        self.final = final
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.temp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.part")
        self.file = open(self.temp, "xb")  # noqa: SIM115 - closed in finish/abort

    def write(self, data: bytes) -> None:
        self.file.write(data)

    def finish(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()

    def commit(self) -> None:
        if not self.file.closed:
            self.finish()
        os.replace(self.temp, self.final)

    def abort(self) -> None:
        self.file.close()
        self.temp.unlink(missing_ok=True)


# S3 ---------------------------------------------------------------------------

# One bounded client per storage object (storages are rebuilt when settings change).
_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


class S3(Storage):
    """A bucket on S3 or an S3-compatible server (django-storages' ``S3Storage``)."""

    is_s3 = True

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


# Choosing one -----------------------------------------------------------------


class _Unsupported(Storage):
    def describe(self) -> str:
        return f"a {type(self.django).__name__} storage"

    def advice(self) -> str:
        return "check STORAGES['backups']"

    def _probe(self) -> str:
        return self.describe()

    def open_sink(self, name: str) -> Sink:
        raise BackupError(
            f"backups need a local folder or S3 storage, not "
            f"{type(self.django).__name__}; check STORAGES['backups']."
        )


def backup_storage() -> Storage:
    """Return the configured backup storage (``STORAGES["backups"]``)."""
    django_storage = storages["backups"]
    if hasattr(django_storage, "bucket_name") and hasattr(django_storage, "connection"):
        return S3(django_storage)
    if hasattr(django_storage, "path"):
        return Folder(django_storage)
    return _Unsupported(django_storage)


# Bytes in transit -------------------------------------------------------------


class Digest:
    """Pass bytes on to a sink, counting and hashing them."""

    def __init__(self, sink: Any, progress: ProgressCallback | None = None):
        self.sink = sink
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.progress = progress

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.sha256.update(data)
        self.size += len(data)
        self.sink.write(data)
        if self.progress is not None:
            self.progress(self.size)


class Null:
    """A sink that keeps nothing (for reading a backup only to check it)."""

    def write(self, data: bytes) -> None:
        pass
