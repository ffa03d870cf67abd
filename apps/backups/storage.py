"""Where backups are kept: a local folder or an S3 bucket, behind one interface.

``backup_storage()`` wraps ``storages["backups"]`` in a :class:`Folder` or an
:class:`~apps.backups.s3.S3` (its own module, so that only S3 loads botocore); the rest of the app calls only the methods of :class:`Storage` and never
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
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.core.files.storage import storages

from .errors import BackupError, BackupNotFound, StorageUnavailable, describe

PREFIX = "backup/"
CHUNK = 1024 * 1024

# Called with the bytes of a backup done so far, a running total; a restore that reads
# it twice (an S3 download, then the load) starts again from zero for the second pass.
ProgressCallback = Callable[[int], None]


class Storage:
    """The operations backups need from a storage; see :class:`Folder` and :class:`S3`."""

    is_s3 = False
    # What its calls raise when the storage itself fails (S3 adds botocore's).
    failures: tuple[type[BaseException], ...] = (OSError,)

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
        except self.failures as exc:
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
        except self.failures as exc:
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
    # Asked of the class: on an S3Storage, `connection` is a property that would
    # open a boto3 session for nothing.
    kind = type(django_storage)
    if hasattr(django_storage, "bucket_name") and hasattr(kind, "connection"):
        # Only S3 needs botocore: ~70 ms of every command's start-up otherwise
        # (botocore, urllib3, pyOpenSSL; bench/startup.py).
        from .s3 import S3  # noqa: PLC0415

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
