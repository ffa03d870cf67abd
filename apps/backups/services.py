"""Database backups: streamed dumps to storage, listing, verified restore, retention.

A backup is two objects under ``backup/`` in ``storages["backups"]``:
``<engine>-backup-YYYYmmddHHMMSS-<microseconds>-<6 random hex>.<ext>`` and, beside it,
``<that name>.json`` with the engine, server version, size, SHA-256, creation time and
Stagehand version. Names taken before sub-second names (``…-YYYYmmddHHMMSS.<ext>``)
still list and restore.

The dump is streamed: ``pg_dump`` writes into a pipe, and each chunk is hashed and
handed to the storage as it arrives. On S3 the chunks become parts of a multipart
upload (bounded in size and number in flight, so memory stays flat whatever the size
of the database); on a local folder they go to a hidden temporary file. Only once the
dump is complete is its metadata written, and only then is the dump published under
its final name (the multipart upload completed, or the temporary file linked into
place): a dump is never visible without its metadata. On any failure the upload is
aborted or the temporary file removed, and a cleanup that fails is reported.

A dump found without readable metadata (left by an older version, copied by hand, or
damaged) is listed as incomplete, is never ``latest`` and is removed by retention once
a day old. Every storage failure is a ``StorageUnavailable`` that names the storage and
its endpoint; S3 calls have bounded timeouts and retries, so nothing waits forever.

A restore never touches the live database before the new one is complete and its
checksum verified. PostgreSQL: ``pg_restore`` into a new database, then other sessions
are terminated and the two names swapped in one transaction, the previous database kept
under a dated name. SQLite: the file is restored beside the live one, checked with
``PRAGMA integrity_check`` and renamed over it atomically, the previous file kept under
a dated name.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import posixpath
import queue
import re
import secrets
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
import weakref
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.files.storage import storages
from django.db import connections

from apps.core import __version__
from apps.core.secrets import mask_url

logger = logging.getLogger(__name__)

PREFIX = "backup/"
CHUNK = 1024 * 1024
# S3 parts: at least 5 MiB (all but the last), at most 10,000 of them. Parts grow
# with the upload so that memory stays bounded (two parts in flight at most) while a
# dump can still reach about 370 GB.
PART_SIZE = 8 * 1024 * 1024
MAX_PART_SIZE = 64 * 1024 * 1024
PARTS_PER_STEP = 2000

# ``-<microseconds>-<random>`` is absent from names taken before it existed.
NAME_RE = re.compile(
    r"^(?P<engine>postgresql|sqlite)-backup-(?P<stamp>\d{14})"
    r"(?:-(?P<micro>\d{6})-(?P<tag>[0-9a-f]{6}))?"
    r"\.(?P<ext>dump|sqlite3|sqlite3\.gz)$"
)
STAMP_FORMAT = "%Y%m%d%H%M%S"
METADATA_SUFFIX = ".json"
# A dump without readable metadata younger than this may be one whose publication is
# under way by an older version; retention leaves it alone until then.
INCOMPLETE_GRACE = dt.timedelta(days=1)

# Metadata is a few hundred bytes; anything far larger is not loaded into memory.
MAX_METADATA_SIZE = 64 * 1024

COMPLETE, INCOMPLETE, DAMAGED = "complete", "incomplete", "damaged"

ProgressCallback = Callable[[int], None]


class BackupError(Exception):
    """A backup, restore or prune failed; the message says what to do next."""


class BackupNotFound(BackupError):
    """There is no backup of that name (or none at all for ``latest``)."""


class StorageUnavailable(BackupError):
    """The backup storage could not be reached or refused a request."""


@dataclass
class BackupInfo:
    name: str
    engine: str
    size: int
    created: dt.datetime
    compressed: bool | None  # None: a PostgreSQL dump whose metadata is unreadable
    metadata: dict[str, Any] = field(default_factory=dict)
    # COMPLETE, INCOMPLETE (no readable metadata) or DAMAGED (metadata disagrees
    # with the dump); ``problem`` says why when it is not complete.
    state: str = COMPLETE
    problem: str = ""
    # Only the metadata file is left (a publication failed and so did its cleanup);
    # never listed, only pruned.
    metadata_only: bool = False

    @property
    def path(self) -> str:
        return PREFIX + self.name

    @property
    def label(self) -> str:
        """The name of what is stored: the dump, or its metadata file alone."""
        return self.name + METADATA_SUFFIX if self.metadata_only else self.name

    @property
    def complete(self) -> bool:
        return self.state == COMPLETE


def backup_name(engine: str, created: dt.datetime, ext: str) -> str:
    """Return a name that sorts by time and never collides, even within a second."""
    return (
        f"{engine}-backup-{created.strftime(STAMP_FORMAT)}-{created:%f}-"
        f"{secrets.token_hex(3)}.{ext}"
    )


def _parse_name(name: str) -> tuple[re.Match, dt.datetime] | None:
    match = NAME_RE.match(name)
    if not match:
        return None
    created = dt.datetime.strptime(match["stamp"], STAMP_FORMAT).replace(
        tzinfo=dt.UTC, microsecond=int(match["micro"] or 0)
    )
    return match, created


@dataclass
class RestoreResult:
    backup: BackupInfo
    database: str
    engine: str
    previous: str  # where the database that was live before is kept
    drop_hint: str
    dry_run: bool = False


# Storage ----------------------------------------------------------------------


def backup_storage():
    return storages["backups"]


def _is_s3(storage) -> bool:
    return hasattr(storage, "bucket_name") and hasattr(storage, "connection")


def backups_go_to_s3() -> bool:
    """Whether the backup storage is S3, which outlives the host and its containers."""
    return _is_s3(backup_storage())


def _s3_key(storage, name: str) -> str:
    location = (storage.location or "").strip("/")
    return posixpath.join(location, name) if location else name


# One bounded client per storage object (storages are rebuilt when settings change).
_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _s3_client(storage):
    """Return an S3 client for ``storage`` whose every call gives up in bounded time.

    botocore's defaults wait 60 s to connect and 60 s per read, retried up to five
    times: a server that accepts and never answers would hold a command for minutes.
    The storage's own client configuration is kept; only the bounds are added.
    """
    client = _clients.get(storage)
    if client is None:
        config = storage.client_config.merge(
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
        client = storage._create_session().client(
            "s3",
            region_name=storage.region_name,
            use_ssl=storage.use_ssl,
            endpoint_url=storage.endpoint_url,
            config=config,
            verify=storage.verify,
        )
        _clients[storage] = client
    return client


def _s3_error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


_MISSING_CODES = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}


def describe_storage(storage=None) -> str:
    """Return where backups go: the bucket, prefix and endpoint, or the folder."""
    storage = storage or backup_storage()
    if _is_s3(storage):
        endpoint = (
            mask_url(storage.endpoint_url)
            if storage.endpoint_url
            else f"AWS S3 in {storage.region_name or 'the default region'}"
        )
        return (
            f"S3 bucket s3://{storage.bucket_name}/{_s3_key(storage, PREFIX)} "
            f"at {endpoint}"
        )
    return f"the folder {getattr(storage, 'location', '?')}/{PREFIX}"


def _storage_advice(storage) -> str:
    if _is_s3(storage):
        return (
            "check that the S3 server is up and reachable from this machine, and "
            "AWS_S3_ENDPOINT_URL, the credentials (AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY) and AWS_STORAGE_BUCKET_NAME"
        )
    return "check that the folder exists and that this user may read and write it"


def _unavailable(
    storage, doing: str, exc: BaseException, then: str
) -> StorageUnavailable:
    return StorageUnavailable(
        f"the backup storage is not reachable while {doing}: {describe_storage(storage)} "
        f"({describe(exc)}); {_storage_advice(storage)}, then {then}."
    )


@contextmanager
def _storage_errors(storage, doing: str, then: str) -> Iterator[None]:
    """Turn a failure of the storage itself into a StorageUnavailable saying so."""
    try:
        yield
    except (BotoCoreError, ClientError, OSError) as exc:
        raise _unavailable(storage, doing, exc, then) from exc


def ensure_bucket(storage) -> None:
    """Create the S3 bucket of ``storage`` when it does not exist yet."""
    client = _s3_client(storage)
    try:
        client.head_bucket(Bucket=storage.bucket_name)
    except ClientError as exc:
        if _s3_error_code(exc) not in {"404", "NoSuchBucket", "NotFound"}:
            raise
        kwargs: dict[str, Any] = {}
        region = client.meta.region_name
        if region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        client.create_bucket(Bucket=storage.bucket_name, **kwargs)


def probe_storage() -> str:
    """Check that the backup storage answers; return where it is.

    Raise StorageUnavailable when it does not (``stats`` and ``info`` show that).
    """
    storage = backup_storage()
    with _storage_errors(storage, "checking it", "run the check again"):
        if _is_s3(storage):
            client = _s3_client(storage)
            try:
                client.head_bucket(Bucket=storage.bucket_name)
            except ClientError as exc:
                if _s3_error_code(exc) not in {"404", "NoSuchBucket", "NotFound"}:
                    raise
                return f"{describe_storage(storage)} (bucket created on first backup)"
            client.list_objects_v2(
                Bucket=storage.bucket_name, Prefix=_s3_key(storage, PREFIX), MaxKeys=1
            )
        elif hasattr(storage, "path"):
            folder = Path(storage.path(PREFIX))
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
    return describe_storage(storage)


def _exists(storage, name: str) -> bool:
    if _is_s3(storage):
        try:
            _s3_client(storage).head_object(
                Bucket=storage.bucket_name, Key=_s3_key(storage, name)
            )
        except ClientError as exc:
            if _s3_error_code(exc) in _MISSING_CODES:
                return False
            raise
        return True
    return storage.exists(name)


def _size(storage, name: str) -> int:
    if _is_s3(storage):
        return _s3_client(storage).head_object(
            Bucket=storage.bucket_name, Key=_s3_key(storage, name)
        )["ContentLength"]
    return storage.size(name)


def _delete(storage, name: str) -> None:
    if _is_s3(storage):
        _s3_client(storage).delete_object(
            Bucket=storage.bucket_name, Key=_s3_key(storage, name)
        )
    else:
        storage.delete(name)


def _delete_quietly(storage, name: str) -> str:
    """Delete ``name``; return why that failed, or an empty string."""
    try:
        _delete(storage, name)
    except Exception as exc:  # noqa: BLE001 - the caller reports it with its own error
        return describe(exc)
    return ""


def _list_files(storage) -> list[tuple[str, int]]:
    """Return (file name, size) of every object directly under ``backup/``."""
    if _is_s3(storage):
        prefix = _s3_key(storage, PREFIX)
        paginator = _s3_client(storage).get_paginator("list_objects_v2")
        found = []
        try:
            for page in paginator.paginate(
                Bucket=storage.bucket_name, Prefix=prefix, Delimiter="/"
            ):
                for entry in page.get("Contents", ()):
                    found.append((entry["Key"][len(prefix) :], entry["Size"]))
        except ClientError as exc:
            if _s3_error_code(exc) == "NoSuchBucket":
                return []
            raise
        return found
    try:
        _dirs, files = storage.listdir(PREFIX.rstrip("/"))
    except FileNotFoundError:
        return []
    return [(name, storage.size(PREFIX + name)) for name in files]


def _read_chunks(storage, name: str) -> Iterator[bytes]:
    """Yield the bytes of ``name`` in chunks, never the whole object at once.

    Raise BackupNotFound when it is not there, StorageUnavailable when the storage
    fails, before or while the bytes arrive.
    """
    try:
        if _is_s3(storage):
            try:
                body = _s3_client(storage).get_object(
                    Bucket=storage.bucket_name, Key=_s3_key(storage, name)
                )["Body"]
            except ClientError as exc:
                if _s3_error_code(exc) in _MISSING_CODES:
                    raise BackupNotFound(
                        f"{name} is not in the backup storage."
                    ) from exc
                raise
            try:
                yield from body.iter_chunks(CHUNK)
            finally:
                body.close()
            return
        try:
            fh = storage.open(name, "rb")
        except FileNotFoundError as exc:
            raise BackupNotFound(f"{name} is not in the backup storage.") from exc
        with fh:
            while chunk := fh.read(CHUNK):
                yield chunk
    except (BotoCoreError, ClientError, OSError) as exc:
        raise _unavailable(
            storage, f"reading {name}", exc, "run the command again"
        ) from exc


class _LocalSink:
    """Write to a hidden temporary file beside the target, renamed into place."""

    def __init__(self, storage, name: str):
        self.final = Path(storage.path(name))
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.temp = self.final.with_name(f".{self.final.name}.{uuid.uuid4().hex}.part")
        self.file = open(self.temp, "xb")  # noqa: SIM115 - closed in finish/abort

    def write(self, data: bytes) -> None:
        self.file.write(data)

    def finish(self) -> None:
        """Make the bytes durable; the file is still hidden."""
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()

    def commit(self) -> None:
        """Publish the file under its final name."""
        if not self.file.closed:
            self.finish()
        os.replace(self.temp, self.final)

    def abort(self) -> None:
        self.file.close()
        self.temp.unlink(missing_ok=True)


class _S3Sink:
    """A multipart upload fed part by part; one part uploads while the next fills.

    The object does not exist under its key until ``commit`` completes the upload.
    """

    def __init__(self, storage, name: str):
        self.client = _s3_client(storage)
        self.bucket = storage.bucket_name
        self.key = _s3_key(storage, name)
        self.upload_id = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=self.key, ContentType="application/octet-stream"
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
        """Upload the remaining parts; the object is still invisible."""
        if self.buffer or not self.number:
            self._send()
        self._stop_thread()
        self._check()

    def commit(self) -> None:
        """Publish the object: complete the multipart upload."""
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


def _open_sink(storage, name: str):
    if _is_s3(storage):
        ensure_bucket(storage)
        return _S3Sink(storage, name)
    if hasattr(storage, "path"):
        return _LocalSink(storage, name)
    raise BackupError(
        f"backups need a local folder or S3 storage, not {type(storage).__name__}; "
        "check STORAGES['backups']."
    )


def _write_object(storage, name: str, data: bytes) -> None:
    """Write a small object in one request (S3) or by a rename (folder)."""
    if _is_s3(storage):
        _s3_client(storage).put_object(
            Bucket=storage.bucket_name,
            Key=_s3_key(storage, name),
            Body=data,
            ContentType="application/json",
        )
        return
    sink = _open_sink(storage, name)
    try:
        sink.write(data)
        sink.commit()
    except BaseException:
        _abort_quietly(sink)
        raise


def _abort_quietly(sink) -> str:
    """Abort ``sink``; return why that failed, or an empty string."""
    try:
        sink.abort()
    except Exception as exc:  # noqa: BLE001 - the original error matters more
        return describe(exc)
    return ""


class _Digest:
    """Pass bytes on to a sink, counting and hashing them."""

    def __init__(self, sink, progress: ProgressCallback | None = None):
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


class _Null:
    def write(self, data: bytes) -> None:
        pass


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# Engines ----------------------------------------------------------------------


def engine_of(database: str) -> str:
    """Return ``postgresql`` or ``sqlite`` for a database alias."""
    from django.db.utils import ConnectionDoesNotExist

    try:
        vendor = connections[database].vendor
    except ConnectionDoesNotExist:
        raise BackupError(
            f"there is no database {database!r}; use one of: "
            f"{', '.join(connections.settings)}."
        ) from None
    if vendor not in {"postgresql", "sqlite"}:
        raise BackupError(
            f"database {database!r} is {vendor}; backups support PostgreSQL and SQLite."
        )
    return vendor


def _pg_env(settings_dict: dict) -> dict[str, str]:
    env = dict(os.environ)
    for key, var in (
        ("HOST", "PGHOST"),
        ("PORT", "PGPORT"),
        ("USER", "PGUSER"),
        ("PASSWORD", "PGPASSWORD"),
    ):
        if settings_dict.get(key):
            env[var] = str(settings_dict[key])
    options = settings_dict.get("OPTIONS") or {}
    for key in ("sslmode", "sslrootcert", "sslcert", "sslkey"):
        if options.get(key):
            env["PG" + key.upper()] = str(options[key])
    return env


def _sqlite_path(settings_dict: dict) -> Path:
    name = str(settings_dict.get("NAME") or "")
    if not name or name == ":memory:" or "mode=memory" in name:
        raise BackupError(
            "this SQLite database lives in memory; only a database file can be "
            "backed up or restored."
        )
    return Path(name)


# Backup -----------------------------------------------------------------------


def backup(
    database: str = "default",
    *,
    compress: bool = True,
    progress: ProgressCallback | None = None,
) -> BackupInfo:
    """Dump ``database`` into the backup storage and return the new backup.

    The dump is published under its final name only after it and its metadata are
    complete. Raise BackupError when anything fails; nothing is then published, and
    a cleanup that failed too is part of the message.
    """
    engine = engine_of(database)
    storage = backup_storage()
    created = dt.datetime.now(dt.UTC)
    if engine == "postgresql":
        ext = "dump"
    else:
        ext = "sqlite3.gz" if compress else "sqlite3"
    name = backup_name(engine, created, ext)
    path = PREFIX + name
    where = describe_storage(storage)
    with _storage_errors(storage, "starting the backup", "run backup again"):
        sink = _open_sink(storage, path)
    digest = _Digest(sink, progress)
    try:
        if engine == "postgresql":
            server_version = _dump_postgresql(database, digest, compress)
        else:
            server_version = _dump_sqlite(database, digest, compress)
        sink.finish()
    except BaseException as exc:
        leftover = _abort_quietly(sink)
        if isinstance(exc, BackupError) or not isinstance(exc, Exception):
            raise
        raise BackupError(
            f"writing the backup to storage failed: {where} ({describe(exc)})"
            f"{_cleanup_note(storage, leftover)}; check that the backup storage is "
            "reachable and has room, then run backup again."
        ) from exc

    metadata = {
        "name": name,
        "engine": engine,
        "server_version": server_version,
        "size": digest.size,
        "sha256": digest.sha256.hexdigest(),
        "created": created.isoformat(),
        "compressed": compress,
        "stagehand_version": __version__,
        "database": database,
    }
    try:
        _write_object(
            storage,
            path + METADATA_SUFFIX,
            json.dumps(metadata, indent=2).encode() + b"\n",
        )
    except BaseException as exc:
        leftover = _abort_quietly(sink)
        if not isinstance(exc, Exception):
            raise
        raise BackupError(
            f"writing the backup's metadata failed: {where} ({describe(exc)}); the "
            f"dump was not published{_cleanup_note(storage, leftover)}. "
            f"{_storage_advice(storage).capitalize()}, then run backup again."
        ) from exc
    try:
        sink.commit()
    except BaseException as exc:
        leftovers = [
            f"removing the dump: {text}" for text in [_abort_quietly(sink)] if text
        ]
        if text := _delete_quietly(storage, path + METADATA_SUFFIX):
            leftovers.append(f"removing {name}{METADATA_SUFFIX}: {text}")
        if not isinstance(exc, Exception):
            raise
        raise BackupError(
            f"publishing the backup failed: {where} ({describe(exc)})"
            f"{_cleanup_note(storage, '; '.join(leftovers))}. "
            f"{_storage_advice(storage).capitalize()}, then run backup again."
        ) from exc
    return BackupInfo(name, engine, digest.size, created, compress, metadata)


def _cleanup_note(storage, leftover: str) -> str:
    if not leftover:
        return ""
    if _is_s3(storage):
        return (
            f" (cleaning up failed too: {leftover}; an unfinished multipart upload "
            "is never listed nor restored, and the bucket's "
            "AbortIncompleteMultipartUpload lifecycle rule removes its parts)"
        )
    return f" (cleaning up failed too: {leftover})"


def _dump_postgresql(database: str, out: _Digest, compress: bool) -> str:
    connection = connections[database]
    settings_dict = connection.settings_dict
    args = [
        "pg_dump",
        "--format=custom",
        "--no-password",
        f"--dbname={settings_dict['NAME']}",
    ]
    if not compress:
        args.append("--compress=0")
    if settings.BACKUP_LOCK_WAIT_TIMEOUT > 0:
        # pg_dump's shared locks wait behind a migration's exclusive one, and every
        # query of the site would then queue behind pg_dump's: give up instead.
        args.append(f"--lock-wait-timeout={settings.BACKUP_LOCK_WAIT_TIMEOUT}s")
    with tempfile.TemporaryFile() as errors:
        try:
            process = subprocess.Popen(
                args,
                stdout=subprocess.PIPE,
                stderr=errors,
                env=_pg_env(settings_dict),
            )
        except FileNotFoundError as exc:
            raise BackupError(
                "pg_dump is not installed; install the PostgreSQL client tools "
                "matching the server's major version."
            ) from exc
        try:
            while chunk := process.stdout.read(CHUNK):
                out.write(chunk)
            returncode = process.wait()
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            process.stdout.close()
        if returncode != 0:
            errors.seek(0)
            message = errors.read().decode(errors="replace").strip()
            # PostgreSQL 15 reports a statement timeout on pg_dump's LOCK TABLE.
            if "could not obtain lock" in message or (
                "LOCK TABLE" in message and "timeout" in message
            ):
                raise BackupError(
                    f"pg_dump failed (exit {returncode}): {message}; another session "
                    "(a migration?) held a table lock for longer than "
                    f"BACKUP_LOCK_WAIT_TIMEOUT ({settings.BACKUP_LOCK_WAIT_TIMEOUT} s). "
                    "Run backup again once it has finished."
                )
            raise BackupError(
                f"pg_dump failed (exit {returncode}): {message or 'no message'}; "
                "check the database settings (DATABASE_URL) and that the server "
                "answers."
            )
    return _pg_server_version(settings_dict)


def _pg_connect(settings_dict: dict, dbname: str):
    import psycopg

    kwargs = {
        k: v
        for k, v in {
            "host": settings_dict.get("HOST") or None,
            "port": settings_dict.get("PORT") or None,
            "user": settings_dict.get("USER") or None,
            "password": settings_dict.get("PASSWORD") or None,
        }.items()
        if v
    }
    options = settings_dict.get("OPTIONS") or {}
    for key in ("sslmode", "sslrootcert", "sslcert", "sslkey"):
        if options.get(key):
            kwargs[key] = options[key]
    return psycopg.connect(dbname=dbname, autocommit=True, connect_timeout=10, **kwargs)


def _pg_server_version(settings_dict: dict) -> str:
    with _pg_connect(settings_dict, settings_dict["NAME"]) as conn:
        return str(conn.execute("SHOW server_version").fetchone()[0])


def _dump_sqlite(database: str, out: _Digest, compress: bool) -> str:
    source_path = _sqlite_path(connections[database].settings_dict)
    if not source_path.exists():
        raise BackupError(f"the SQLite database {source_path} does not exist.")
    # The online backup API copies a consistent snapshot while other connections
    # keep writing; the copy is the only moment the data touches local disk twice,
    # and it is removed as soon as it has been streamed.
    with tempfile.TemporaryDirectory(prefix="stagehand-backup-") as tmp:
        snapshot = Path(tmp) / "snapshot.sqlite3"
        source = sqlite3.connect(source_path, timeout=20)
        target = sqlite3.connect(snapshot)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
        compressor = zlib.compressobj(6, zlib.DEFLATED, 31) if compress else None
        with open(snapshot, "rb") as fh:
            while chunk := fh.read(CHUNK):
                out.write(compressor.compress(chunk) if compressor else chunk)
        if compressor:
            out.write(compressor.flush())
    return sqlite3.sqlite_version


# Listing and retention --------------------------------------------------------


def list_backups() -> list[BackupInfo]:
    """Return the backups in storage, newest first, each with its state.

    A dump without readable metadata is INCOMPLETE, one whose metadata disagrees with
    it DAMAGED; both are listed (so they can be seen and pruned), neither restores
    as ``latest``. Raise StorageUnavailable when the storage does not answer.
    """
    return _scan()[0]


def _scan() -> tuple[list[BackupInfo], list[BackupInfo]]:
    """Return the backups, and the metadata files left without their dump."""
    storage = backup_storage()
    with _storage_errors(storage, "listing the backups", "run the command again"):
        files = dict(_list_files(storage))
        found, orphans = [], []
        for name, size in files.items():
            dump = name.removesuffix(METADATA_SUFFIX)
            parsed = _parse_name(dump)
            if parsed is None or (dump != name and dump in files):
                continue
            match, created = parsed
            item = BackupInfo(
                name=dump,
                engine=match["engine"],
                size=size,
                created=created,
                compressed=_compressed_by_name(match),
            )
            if dump != name:
                item.state, item.metadata_only = INCOMPLETE, True
                item.problem = "only its metadata file is left: the dump is gone"
                orphans.append(item)
            elif name + METADATA_SUFFIX in files:
                _classify(storage, item)
                found.append(item)
            else:
                item.state, item.problem = INCOMPLETE, "it has no metadata file"
                found.append(item)
    found.sort(key=lambda b: (b.created, b.name), reverse=True)
    return found, orphans


def _compressed_by_name(match: re.Match) -> bool | None:
    # A PostgreSQL dump is .dump either way; only its metadata knows.
    return match["ext"] != "sqlite3" if match["engine"] == "sqlite" else None


def _read_metadata(storage, item: BackupInfo) -> dict[str, Any]:
    """Return the metadata of ``item``; raise BackupError saying why it is unreadable.

    StorageUnavailable (the storage failing, not the file) passes through as it is.
    """
    try:
        raw = bytearray()
        for chunk in _read_chunks(storage, item.path + METADATA_SUFFIX):
            raw += chunk
            if len(raw) > MAX_METADATA_SIZE:
                raise ValueError(f"it is larger than {MAX_METADATA_SIZE} bytes")
        metadata = json.loads(raw)
    except StorageUnavailable:
        raise
    except (BackupNotFound, ValueError, RecursionError) as exc:
        raise BackupError(
            f"{item.name} has no readable metadata ({describe(exc)})"
        ) from exc
    if not isinstance(metadata, dict):
        raise BackupError(
            f"{item.name} has no readable metadata (it holds no JSON object)"
        )
    return metadata


def _metadata_problem(item: BackupInfo, metadata: dict[str, Any]) -> str:
    """Return why ``metadata`` does not describe ``item``'s dump, or ''."""
    if metadata.get("engine") != item.engine:
        return (
            f"its metadata says {metadata.get('engine')!r}; the files do not belong "
            "together"
        )
    if item.size != metadata.get("size"):
        return (
            f"it is {item.size} bytes but was written as {metadata.get('size')} "
            "bytes: it is truncated or damaged"
        )
    checksum = metadata.get("sha256")
    if not isinstance(checksum, str) or not re.fullmatch(r"[0-9a-f]{64}", checksum):
        return "its metadata holds no SHA-256 checksum to verify it with"
    return ""


def _with_metadata(item: BackupInfo, metadata: dict[str, Any]) -> None:
    item.metadata = metadata
    if item.engine == "postgresql" and isinstance(metadata.get("compressed"), bool):
        item.compressed = metadata["compressed"]


def _classify(storage, item: BackupInfo) -> None:
    try:
        metadata = _read_metadata(storage, item)
    except StorageUnavailable:
        raise
    except BackupError as exc:
        item.state, item.problem = INCOMPLETE, str(exc).removeprefix(f"{item.name} ")
        return
    _with_metadata(item, metadata)
    if problem := _metadata_problem(item, metadata):
        item.state, item.problem = DAMAGED, problem


@dataclass
class PruneDecision:
    backup: BackupInfo
    delete: bool
    reason: str


def _counts_for_retention(item: BackupInfo) -> bool:
    # Complete and its checksum readable. A restore verification recorded in the
    # metadata (a ``verified`` outcome) is the place to also drop failed ones here.
    return item.complete


def plan_prune(keep: int, *, now: dt.datetime | None = None) -> list[PruneDecision]:
    """Decide, newest first, which backups retention keeps and which it deletes.

    Only complete backups count towards ``keep``, and the newest complete one is
    always kept. A damaged backup is kept while fewer than ``keep`` complete ones are
    newer; an incomplete one (or a metadata file left alone) is deleted once it is
    more than a day old.
    """
    if keep < 1:
        raise BackupError(
            "--keep must be at least 1; prune never deletes every backup."
        )
    now = now or dt.datetime.now(dt.UTC)
    decisions = []
    counted = 0
    backups, orphans = _scan()
    for item in sorted(
        backups + orphans, key=lambda b: (b.created, b.name), reverse=True
    ):
        if _counts_for_retention(item):
            counted += 1
            if counted == 1:
                decision = PruneDecision(item, False, "the newest complete backup")
            elif counted <= keep:
                decision = PruneDecision(
                    item, False, f"complete, one of the newest {keep}"
                )
            else:
                decision = PruneDecision(
                    item, True, f"complete, older than the newest {keep}"
                )
        elif item.state == INCOMPLETE:
            old = now - item.created > INCOMPLETE_GRACE
            age = "more" if old else "less"
            decision = PruneDecision(
                item, old, f"incomplete for {age} than a day: {item.problem}"
            )
        else:
            behind = counted >= keep
            decision = PruneDecision(
                item,
                behind,
                f"damaged, {'older' if behind else 'newer'} than the newest {keep} "
                f"complete: {item.problem}",
            )
        decisions.append(decision)
    return decisions


def delete_backups(backups: list[BackupInfo]) -> None:
    """Delete each backup (dump first: a metadata file alone is never listed).

    Raise BackupError at the first failure, saying what was deleted before it.
    """
    storage = backup_storage()
    done: list[str] = []
    for item in backups:
        paths = [item.path] if not item.metadata_only else []
        for path in [*paths, item.path + METADATA_SUFFIX]:
            try:
                _delete(storage, path)
            except Exception as exc:  # noqa: BLE001 - reported with what was done
                deleted = f"deleted {len(done)} of {len(backups)} before it"
                raise BackupError(
                    f"deleting {path.removeprefix(PREFIX)} failed: "
                    f"{describe_storage(storage)} ({describe(exc)}); {deleted}"
                    f"{': ' + ', '.join(done) if done else ''}. "
                    f"{_storage_advice(storage).capitalize()}, then run "
                    "prune_backups again."
                ) from exc
        done.append(item.label)


def prune(keep: int, *, dry_run: bool = False) -> list[BackupInfo]:
    """Apply retention (see ``plan_prune``); return the backups (to be) deleted."""
    doomed = [d.backup for d in plan_prune(keep) if d.delete]
    if not dry_run:
        delete_backups(doomed)
    return doomed


def apply_retention() -> list[BackupInfo]:
    """Apply ``BACKUP_KEEP`` (0 keeps everything); return the deleted backups."""
    keep = settings.BACKUP_KEEP
    return prune(keep) if keep > 0 else []


# Restore ----------------------------------------------------------------------


def find_latest() -> tuple[BackupInfo, list[BackupInfo]]:
    """Return the newest complete backup and the newer ones skipped (not complete)."""
    backups = list_backups()
    skipped = []
    for item in backups:
        if item.complete:
            return item, skipped
        skipped.append(item)
    if skipped:
        raise BackupNotFound(
            f"there is no complete backup: {len(skipped)} incomplete or damaged "
            f"({skipped[0].name}: {skipped[0].problem}); take one with `backup`."
        )
    raise BackupNotFound("there are no backups yet; take one with `backup`.")


def resolve(name: str) -> BackupInfo:
    """Return the backup called ``name`` (or the newest complete one for ``latest``)."""
    if name == "latest":
        item, skipped = find_latest()
        for other in skipped:
            logger.warning(
                "Skipped %s for latest: %s, %s.", other.name, other.state, other.problem
            )
        return item
    name = name.removeprefix(PREFIX)
    parsed = _parse_name(name)
    if parsed is None:
        raise BackupError(
            f"{name!r} is not a backup name; `backups` lists them "
            "(such as postgresql-backup-20250101020000-123456-3f9a1c.dump)."
        )
    match, created = parsed
    storage = backup_storage()
    with _storage_errors(storage, f"looking up {name}", "run the restore again"):
        if not _exists(storage, PREFIX + name):
            raise BackupNotFound(
                f"there is no backup {name}; `backups` lists the ones there are."
            )
        size = _size(storage, PREFIX + name)
    return BackupInfo(
        name=name,
        engine=match["engine"],
        size=size,
        created=created,
        compressed=_compressed_by_name(match),
    )


def verify(
    name: str, database: str = "default", *, checksum: bool = False
) -> BackupInfo:
    """Check that a backup exists, is complete and fits ``database``; return it.

    With ``checksum``, also read it whole and compare its SHA-256 (restore does that
    while it streams, before anything live changes).
    """
    target_engine = engine_of(database)
    item = resolve(name)
    storage = backup_storage()
    try:
        metadata = _read_metadata(storage, item)
    except StorageUnavailable:
        raise
    except BackupError as exc:
        raise BackupError(
            f"{exc}, so it cannot be verified; restore another backup."
        ) from exc
    _with_metadata(item, metadata)
    if metadata.get("engine") != item.engine:
        raise BackupError(
            f"{item.name}: {_metadata_problem(item, metadata)}. Restore another backup."
        )
    if item.engine != target_engine:
        raise BackupError(
            f"{item.name} is a {item.engine} backup and database {database!r} is "
            f"{target_engine}; a backup restores only into the engine it came from."
        )
    if problem := _metadata_problem(item, metadata):
        raise BackupError(f"{item.name}: {problem}. Restore another backup.")
    if checksum:
        digest = _Digest(_Null())
        for chunk in _read_chunks(storage, item.path):
            digest.write(chunk)
        _check_checksum(item, digest)
    return item


def _check_checksum(item: BackupInfo, digest: _Digest) -> None:
    expected = item.metadata.get("sha256")
    if digest.sha256.hexdigest() != expected or digest.size != item.metadata["size"]:
        raise BackupError(
            f"{item.name} does not match its checksum (SHA-256 "
            f"{digest.sha256.hexdigest()[:12]}…, expected {str(expected)[:12]}…): it "
            "is damaged. The live database was not changed; restore another backup."
        )


def restore(
    name: str = "latest",
    database: str = "default",
    *,
    dry_run: bool = False,
    progress: ProgressCallback | None = None,
) -> RestoreResult:
    """Replace ``database`` with the backup ``name``; nothing changes on failure."""
    item = verify(name, database, checksum=dry_run)
    engine = item.engine
    connection = connections[database]
    if connection.in_atomic_block:
        raise BackupError(
            "restore cannot run inside a database transaction; run it on its own."
        )
    stamp = dt.datetime.now(dt.UTC).strftime(STAMP_FORMAT)
    if engine == "postgresql":
        live = connection.settings_dict["NAME"]
        previous = f"{live[: 63 - len('_before_') - 14]}_before_{stamp}"
        drop_hint = f"psql -d postgres -c 'DROP DATABASE \"{previous}\"'"
    else:
        live_path = _sqlite_path(connection.settings_dict)
        previous = str(_free_name(live_path, f"-before-{stamp}"))
        drop_hint = f"rm {previous}"
    result = RestoreResult(item, database, engine, previous, drop_hint, dry_run)
    if dry_run:
        return result
    # Logged, since a restore started from the API may outlive its request.
    logger.warning("Restoring database %s from %s.", database, item.name)
    try:
        if engine == "postgresql":
            _restore_postgresql(item, database, previous, stamp, progress)
        else:
            _restore_sqlite(item, database, Path(previous), progress)
    except BaseException as exc:
        logger.error(
            "Restoring database %s from %s failed: %s",
            database,
            item.name,
            exc,
        )
        raise
    logger.warning(
        "Restored database %s from %s; the previous one is kept as %s.",
        database,
        item.name,
        previous,
    )
    return result


def _free_name(live: Path, tag: str) -> Path:
    """Return ``<stem><tag><suffix>`` beside ``live``, numbered when that is taken
    (two restores within one second)."""
    candidate = live.with_name(f"{live.stem}{tag}{live.suffix}")
    number = 1
    while candidate.exists():
        number += 1
        candidate = live.with_name(f"{live.stem}{tag}-{number}{live.suffix}")
    return candidate


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _restore_postgresql(
    item: BackupInfo,
    database: str,
    previous: str,
    stamp: str,
    progress: ProgressCallback | None,
) -> None:
    import psycopg

    settings_dict = connections[database].settings_dict
    live = settings_dict["NAME"]
    fresh = f"{live[: 63 - len('_restore_') - 14]}_restore_{stamp}"
    try:
        maintenance = _pg_connect(settings_dict, "postgres")
    except psycopg.Error as exc:
        raise BackupError(
            f"cannot reach the PostgreSQL maintenance database 'postgres' "
            f"({describe(exc)}); restore needs it to create and rename databases."
        ) from exc
    with maintenance:
        row = maintenance.execute(
            "SELECT pg_encoding_to_char(encoding), datcollate, datctype "
            "FROM pg_database WHERE datname = %s",
            [live],
        ).fetchone()
        if row is None:
            raise BackupError(f"the live database {live!r} does not exist.")
        encoding, collate, ctype = row
        maintenance.execute(
            f"CREATE DATABASE {_quote(fresh)} TEMPLATE template0 "
            f"ENCODING {_literal(encoding)} LC_COLLATE {_literal(collate)} "
            f"LC_CTYPE {_literal(ctype)}"
        )
        try:
            _pg_restore(item, settings_dict, fresh, progress)
            _swap(maintenance, database, live, fresh, previous)
        except BaseException:
            maintenance.execute(f"DROP DATABASE IF EXISTS {_quote(fresh)} WITH (FORCE)")
            raise


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _pg_restore(
    item: BackupInfo,
    settings_dict: dict,
    target: str,
    progress: ProgressCallback | None,
) -> None:
    args = [
        "pg_restore",
        "--no-password",
        "--no-owner",
        "--no-acl",
        "--exit-on-error",
        f"--dbname={target}",
    ]
    storage = backup_storage()
    digest = _Digest(_Null(), progress)
    with tempfile.TemporaryFile() as errors:
        try:
            process = subprocess.Popen(
                args,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                env=_pg_env(settings_dict),
            )
        except FileNotFoundError as exc:
            raise BackupError(
                "pg_restore is not installed; install the PostgreSQL client tools."
            ) from exc
        broken = False
        try:
            for chunk in _read_chunks(storage, item.path):
                digest.write(chunk)
                if not broken:
                    try:
                        process.stdin.write(chunk)
                    except BrokenPipeError:
                        broken = True  # pg_restore stopped; its exit code says why
            try:
                process.stdin.close()
            except BrokenPipeError:
                pass
            returncode = process.wait()
        except BaseException as exc:
            process.kill()
            process.wait()
            if isinstance(exc, Exception) and not isinstance(exc, BackupError):
                raise BackupError(
                    f"reading {item.name} from storage failed ({describe(exc)}); the "
                    "live database was not changed."
                ) from exc
            raise
        _check_checksum(item, digest)
        if returncode != 0:
            errors.seek(0)
            message = errors.read().decode(errors="replace").strip()
            raise BackupError(
                f"pg_restore failed (exit {returncode}): {message[-2000:]}; the live "
                "database was not changed."
            )


def _swap(maintenance, database: str, live: str, fresh: str, previous: str) -> None:
    """Rename ``live`` to ``previous`` and ``fresh`` to ``live`` in one transaction."""
    import psycopg

    # This process's own connections would block the rename: close them first.
    for alias in connections:
        conn = connections[alias]
        if conn.vendor == "postgresql" and conn.settings_dict.get("NAME") == live:
            conn.close()
    # Keep new sessions out while the old ones are terminated; an owner may do this,
    # and when the role may not, terminating and retrying below still works.
    try:
        maintenance.execute(
            f"ALTER DATABASE {_quote(live)} WITH ALLOW_CONNECTIONS false"
        )
        blocked = True
    except psycopg.Error:
        blocked = False
    try:
        deadline = time.monotonic() + 30
        while True:
            maintenance.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                [live],
            )
            try:
                with maintenance.transaction():
                    maintenance.execute(
                        f"ALTER DATABASE {_quote(live)} RENAME TO {_quote(previous)}"
                    )
                    maintenance.execute(
                        f"ALTER DATABASE {_quote(fresh)} RENAME TO {_quote(live)}"
                    )
                break
            except psycopg.errors.ObjectInUse:
                if time.monotonic() > deadline:
                    raise BackupError(
                        f"sessions kept reconnecting to {live!r} for 30 s, so it could "
                        "not be swapped; stop the web and worker processes and run "
                        "restore again. The live database was not changed."
                    ) from None
                time.sleep(0.2)
    except BaseException:
        if blocked:
            maintenance.execute(
                f"ALTER DATABASE {_quote(live)} WITH ALLOW_CONNECTIONS true"
            )
        raise
    if blocked:
        maintenance.execute(
            f"ALTER DATABASE {_quote(previous)} WITH ALLOW_CONNECTIONS true"
        )


def _restore_sqlite(
    item: BackupInfo,
    database: str,
    previous: Path,
    progress: ProgressCallback | None,
) -> None:
    live = _sqlite_path(connections[database].settings_dict)
    temp = live.with_name(f".{live.name}.restore-{uuid.uuid4().hex}")
    digest = _Digest(_Null(), progress)
    try:
        decompressor = zlib.decompressobj(31) if item.compressed else None
        try:
            with open(temp, "xb") as fh:
                for chunk in _read_chunks(backup_storage(), item.path):
                    digest.write(chunk)
                    fh.write(decompressor.decompress(chunk) if decompressor else chunk)
                if decompressor:
                    fh.write(decompressor.flush())
                fh.flush()
                os.fsync(fh.fileno())
        except zlib.error as exc:
            _check_checksum(item, digest)
            raise BackupError(
                f"{item.name} could not be decompressed ({exc}); the live database "
                "was not changed. Restore another backup."
            ) from exc
        _check_checksum(item, digest)
        _check_sqlite_integrity(item, temp)
        for alias in connections:
            conn = connections[alias]
            if conn.vendor == "sqlite" and conn.settings_dict.get("NAME") == str(live):
                conn.close()
        _checkpoint(live)
        if live.exists():
            # A second name for the current file: it stays as the rollback copy
            # when the restored file takes the live name.
            os.link(live, previous)
        os.replace(temp, live)
    finally:
        temp.unlink(missing_ok=True)


def _check_sqlite_integrity(item: BackupInfo, path: Path) -> None:
    try:
        check = sqlite3.connect(path)
        try:
            rows = check.execute("PRAGMA integrity_check").fetchall()
            # Rollback-journal mode, so no stale -wal file can ever apply to it.
            check.execute("PRAGMA journal_mode=DELETE")
        finally:
            check.close()
    except sqlite3.DatabaseError as exc:
        rows = [(str(exc),)]
    if rows != [("ok",)]:
        raise BackupError(
            f"{item.name} fails SQLite's integrity check "
            f"({'; '.join(str(r[0]) for r in rows[:3])}); the live database was "
            "not changed. Restore another backup."
        )


def _checkpoint(live: Path) -> None:
    """Fold a write-ahead log into the live file so none is left to misapply."""
    wal = live.with_name(live.name + "-wal")
    if not wal.exists():
        return
    conn = sqlite3.connect(live, timeout=20)
    try:
        busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.close()
    if busy:
        raise BackupError(
            f"{live} is busy in write-ahead-log mode; stop the web and worker "
            "processes and run restore again. The live database was not changed."
        )
