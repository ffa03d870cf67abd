"""PostgreSQL: ``pg_dump --format=custom`` out, ``pg_restore`` into a new database.

pg_dump writes its archive uncompressed, and ``pgarchive`` compresses it on every
core into the archive pg_dump would have written (one core would be the bottleneck).

The dump reads one snapshot, exported by a transaction of ours that also counts the
rows of every table in that same snapshot, so the counts in the metadata are exactly
what the dump holds. A restore (or a rehearsal) creates a new database with the live
one's encoding and locale and restores into it: with one job straight from the
storage's stream; with several (``pg_restore --jobs``, which needs a seekable file)
from a copy spooled to local disk and checksum-verified first. Only a complete copy
is swapped in: other sessions are terminated and the two names exchanged in one
transaction, the live database kept under a dated name.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from django.db import connections

from ..catalog import BackupInfo
from ..errors import BackupDamaged, BackupError, describe
from ..storage import CHUNK, Digest, Null, ProgressCallback, Storage
from . import pgload
from .base import Dumped, Engine, SideCopy, check_checksum
from .pgarchive import ArchiveError, UnsupportedArchive, compress_archive, read_contents

# The spooled copy needs the dump's size and this much more free space.
SPOOL_MARGIN = 64 * 1024 * 1024


def env(settings_dict: dict) -> dict[str, str]:
    """The environment that points pg_dump / pg_restore at ``settings_dict``."""
    result = dict(os.environ)
    for key, var in (
        ("HOST", "PGHOST"),
        ("PORT", "PGPORT"),
        ("USER", "PGUSER"),
        ("PASSWORD", "PGPASSWORD"),
    ):
        if settings_dict.get(key):
            result[var] = str(settings_dict[key])
    options = settings_dict.get("OPTIONS") or {}
    for key in ("sslmode", "sslrootcert", "sslcert", "sslkey"):
        if options.get(key):
            result["PG" + key.upper()] = str(options[key])
    return result


_MEMORY_RE = re.compile(r"([0-9]+)(kB|MB|GB|TB)?")
_KB_PER_UNIT = {None: 1, "kB": 1, "MB": 1024, "GB": 1024**2, "TB": 1024**3}
# What PostgreSQL accepts for maintenance_work_mem: 1 MB to 2^31 - 1 kB.
_MEMORY_KB = range(1024, 2**31)


def restore_env(settings_dict: dict, jobs: int = 1) -> dict[str, str]:
    """``env`` with the session settings of pg_restore's connections (PGOPTIONS).

    Only the new database is written, and nothing reads it before the swap, whose
    own commit is synchronous and so makes every earlier commit durable: its
    sessions need not wait for each commit to reach the disk. Index builds get
    BACKUP_RESTORE_MAINTENANCE_WORK_MEM each, so that a table's index sorts in memory
    instead of in temporary files. ``jobs`` is how many of its sessions build side
    by side: with several, they are the parallelism, and an index build of its own
    parallel workers (max_parallel_maintenance_workers) would only share the same
    cores with the other jobs' builds, and their coordination cost a third of the
    index builds' time (docs/benchmarks.md, "Backups"). One keeps the server's
    setting: its builds are alone on the machine.
    """
    result = env(settings_dict)
    options = ["-c synchronous_commit=off"]
    if jobs > 1:
        options.append("-c max_parallel_maintenance_workers=0")
    memory = str(settings.BACKUP_RESTORE_MAINTENANCE_WORK_MEM).strip()
    if memory:
        found = _MEMORY_RE.fullmatch(memory)
        kilobytes = int(found[1]) * _KB_PER_UNIT[found[2]] if found else -1
        if kilobytes not in _MEMORY_KB:
            raise BackupError(
                f"BACKUP_RESTORE_MAINTENANCE_WORK_MEM is {memory!r}; set it to an "
                "amount from 1MB to 2TB such as 256MB or 1GB (kB, MB, GB, TB), or "
                "leave it empty for the server's maintenance_work_mem. The live "
                "database was not changed."
            )
        options.append(f"-c maintenance_work_mem={memory}")
    result["PGOPTIONS"] = " ".join([result.get("PGOPTIONS", ""), *options]).strip()
    return result


def connect(settings_dict: dict, dbname: str) -> psycopg.Connection:
    """Connect (autocommit) to ``dbname`` on the server of ``settings_dict``."""
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


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


_TABLES = """
    SELECT n.nspname, c.relname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\\_%'
    ORDER BY 1, 2
"""


def _key(schema: str, table: str) -> str:
    return table if schema == "public" else f"{schema}.{table}"


def count_rows_on(conn: psycopg.Connection) -> dict[str, int]:
    """Return the rows of every table (``schema.table``, ``public.`` left out)."""
    tables = conn.execute(_TABLES).fetchall()
    if not tables:
        return {}
    parts = [
        f"SELECT {literal(schema)}, {literal(table)}, count(*) "
        f"FROM {quote(schema)}.{quote(table)}"
        for schema, table in tables
    ]
    rows = conn.execute(" UNION ALL ".join(parts)).fetchall()
    return {_key(schema, table): count for schema, table, count in rows}


class PostgreSQL(Engine):
    vendor = "postgresql"

    def extension(self, compress: bool) -> str:
        return "dump"

    # Dump -------------------------------------------------------------------

    def dump(self, out: Digest, compress: bool) -> Dumped:
        settings_dict = self.settings_dict
        live = settings_dict["NAME"]
        args = [
            "pg_dump",
            "--format=custom",
            "--no-password",
            f"--dbname={live}",
        ]
        # Uncompressed from pg_dump either way: compressed here on every core
        # (pgarchive), unless pg_dump's archive version is not one parsed there.
        args.append("--compress=0")
        lock_wait = settings.BACKUP_LOCK_WAIT_TIMEOUT
        if lock_wait > 0:
            # pg_dump's shared locks wait behind a migration's exclusive one, and
            # every query of the site would then queue behind pg_dump's: give up.
            args.append(f"--lock-wait-timeout={lock_wait}s")
        try:
            exporter = connect(settings_dict, live)
        except psycopg.Error as exc:
            raise BackupError(
                f"pg_dump failed before it started: cannot connect to database "
                f"{live!r} ({describe(exc)}); check the database settings "
                "(DATABASE_URL) and that the server answers."
            ) from exc
        with exporter:
            exporter.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            if lock_wait > 0:
                exporter.execute(f"SET LOCAL lock_timeout = '{int(lock_wait)}s'")
            snapshot = exporter.execute("SELECT pg_export_snapshot()").fetchone()[0]
            server_version = str(exporter.execute("SHOW server_version").fetchone()[0])
            args.append(f"--snapshot={snapshot}")
            counted: dict[str, Any] = {}
            counter = threading.Thread(
                target=self._count_into, args=(exporter, counted), daemon=True
            )
            self._run_pg_dump(args, settings_dict, out, counter, exporter, compress)
            if "error" in counted:
                raise BackupError(
                    f"counting the rows of the dump failed ({counted['error']}); "
                    "another session (a migration?) may hold a table lock. Run "
                    "backup again once it has finished."
                )
            exporter.execute("COMMIT")
        return Dumped(server_version, counted["rows"])

    @staticmethod
    def _count_into(conn: psycopg.Connection, result: dict[str, Any]) -> None:
        # In the exporting transaction: the same snapshot as pg_dump's.
        try:
            result["rows"] = count_rows_on(conn)
        except psycopg.Error as exc:
            result["error"] = describe(exc)

    def _run_pg_dump(
        self,
        args: list[str],
        settings_dict: dict,
        out: Digest,
        counter: threading.Thread,
        exporter: psycopg.Connection,
        compress: bool,
    ) -> None:
        with tempfile.TemporaryFile() as errors:
            process = _start_pg_dump(args, settings_dict, errors)
            # Counting runs beside the dump (psycopg waits without the GIL).
            counter.start()
            unreadable = ""
            try:
                if compress:
                    try:
                        compress_archive(process.stdout, out)
                    except UnsupportedArchive:
                        # Nothing written yet: let pg_dump compress, as it does by
                        # default, on the same snapshot.
                        process.kill()
                        process.wait()
                        process.stdout.close()
                        errors.seek(0)
                        errors.truncate()
                        process = _start_pg_dump(
                            [a for a in args if a != "--compress=0"],
                            settings_dict,
                            errors,
                        )
                        _copy(process.stdout, out)
                    except ArchiveError as exc:
                        # pg_dump stopping half way truncates its archive: its own
                        # error (below) says why; read on so that it can exit.
                        unreadable = str(exc)
                        while process.stdout.read(CHUNK):
                            pass
                else:
                    _copy(process.stdout, out)
                returncode = process.wait()
            except BaseException:
                process.kill()
                process.wait()
                exporter.cancel_safe()
                counter.join()
                raise
            finally:
                process.stdout.close()
            if unreadable and returncode == 0:
                exporter.cancel_safe()
                counter.join()
                raise BackupError(
                    f"pg_dump's archive could not be compressed ({unreadable}); "
                    "run backup with --no-compress, and report this with the "
                    "output of pg_dump --version."
                )
            if returncode != 0:
                exporter.cancel_safe()
            counter.join()
            if returncode != 0:
                errors.seek(0)
                message = errors.read().decode(errors="replace").strip()
                lock_wait = settings.BACKUP_LOCK_WAIT_TIMEOUT
                # PostgreSQL 15 reports a statement timeout on pg_dump's LOCK TABLE.
                if "could not obtain lock" in message or (
                    "LOCK TABLE" in message and "timeout" in message
                ):
                    raise BackupError(
                        f"pg_dump failed (exit {returncode}): {message}; another "
                        "session (a migration?) held a table lock for longer than "
                        f"BACKUP_LOCK_WAIT_TIMEOUT ({lock_wait} s). Run backup again "
                        "once it has finished."
                    )
                raise BackupError(
                    f"pg_dump failed (exit {returncode}): {message or 'no message'}; "
                    "check the database settings (DATABASE_URL) and that the server "
                    "answers."
                )

    def table_names(self, settings_dict: dict[str, Any]) -> set[str]:
        with connect(settings_dict, settings_dict["NAME"]) as conn:
            return {_key(*row) for row in conn.execute(_TABLES)}

    def count_rows(self, settings_dict: dict[str, Any]) -> dict[str, int]:
        with connect(settings_dict, settings_dict["NAME"]) as conn:
            return count_rows_on(conn)

    # Restore ----------------------------------------------------------------

    def previous_name(self, stamp: str) -> tuple[str, str]:
        live = self.settings_dict["NAME"]
        previous = f"{live[: 63 - len('_before_') - 14]}_before_{stamp}"
        return previous, f"psql -d postgres -c 'DROP DATABASE \"{previous}\"'"

    @contextmanager
    def side_copy(
        self,
        item: BackupInfo,
        storage: Storage,
        *,
        purpose: str,
        stamp: str,
        progress: ProgressCallback | None = None,
        jobs: int = 1,
    ) -> Iterator[SideCopy]:
        settings_dict = self.settings_dict
        live = settings_dict["NAME"]
        tag = f"_{purpose}_"
        fresh = f"{live[: 63 - len(tag) - 14]}{tag}{stamp}"
        try:
            maintenance = connect(settings_dict, "postgres")
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
                f"CREATE DATABASE {quote(fresh)} TEMPLATE template0 "
                f"ENCODING {literal(encoding)} LC_COLLATE {literal(collate)} "
                f"LC_CTYPE {literal(ctype)}"
            )
            copy = _Copy(self.database, maintenance, dict(settings_dict, NAME=fresh))
            try:
                if jobs > 1:
                    self._restore_spooled(item, storage, fresh, progress, jobs)
                else:
                    self._restore_streamed(item, storage, fresh, progress)
                yield copy
            finally:
                if not copy.swapped:
                    maintenance.execute(
                        f"DROP DATABASE IF EXISTS {quote(fresh)} WITH (FORCE)"
                    )

    def _pg_restore_args(self, target: str, jobs: int = 1) -> list[str]:
        args = [
            "pg_restore",
            "--no-password",
            "--no-owner",
            "--no-acl",
            "--exit-on-error",
            f"--dbname={target}",
        ]
        if jobs > 1:
            args.append(f"--jobs={jobs}")
        return args

    def _start_pg_restore(
        self, args: list[str], errors, jobs: int = 1, **kwargs
    ) -> subprocess.Popen:
        try:
            return subprocess.Popen(
                args,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                env=restore_env(self.settings_dict, jobs),
                **kwargs,
            )
        except FileNotFoundError as exc:
            raise BackupError(
                "pg_restore is not installed; install the PostgreSQL client tools."
            ) from exc

    @staticmethod
    def _check_exit(returncode: int, errors) -> None:
        if returncode != 0:
            errors.seek(0)
            message = errors.read().decode(errors="replace").strip()
            raise BackupDamaged(
                f"pg_restore failed (exit {returncode}): {message[-2000:]}; the live "
                "database was not changed."
            )

    def _restore_streamed(
        self,
        item: BackupInfo,
        storage: Storage,
        target: str,
        progress: ProgressCallback | None,
    ) -> None:
        """One job, fed from the storage's stream: no local copy needed."""
        digest = Digest(Null(), progress)
        with tempfile.TemporaryFile() as errors:
            process = self._start_pg_restore(
                self._pg_restore_args(target), errors, stdin=subprocess.PIPE
            )
            broken = False
            try:
                for chunk in storage.read_chunks(item.path):
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
                        f"reading {item.name} from storage failed ({describe(exc)}); "
                        "the live database was not changed."
                    ) from exc
                raise
            check_checksum(item, digest)
            self._check_exit(returncode, errors)

    def _restore_spooled(
        self,
        item: BackupInfo,
        storage: Storage,
        target: str,
        progress: ProgressCallback | None,
        jobs: int,
    ) -> None:
        """Several jobs, from a seekable local file.

        A dump in a local folder is such a file already and is read in place (a
        prune deleting it meanwhile makes pg_restore fail, never the restore half
        succeed); one from S3 is spooled to BACKUP_SPOOL_DIR first, after a
        free-space check. Either way the SHA-256 is checked before the copy can be
        swapped in; for the local file while pg_restore already reads it.
        """
        local = storage.local_path(item.path)
        if local is not None:
            self._restore_file(item, local, target, jobs, progress)
            return
        with tempfile.TemporaryDirectory(
            prefix="stagehand-restore-", dir=settings.BACKUP_SPOOL_DIR or None
        ) as folder:
            spooled = self._spool(item, storage, Path(folder), progress)
            self._restore_file(item, spooled, target, jobs, progress, verified=True)

    def _spool(
        self,
        item: BackupInfo,
        storage: Storage,
        folder: Path,
        progress: ProgressCallback | None,
    ) -> Path:
        needed = item.size + SPOOL_MARGIN
        try:
            free = shutil.disk_usage(folder).free
        except OSError as exc:
            raise BackupError(
                f"the spool folder {folder} for a parallel restore is not usable "
                f"({describe(exc)}); set BACKUP_SPOOL_DIR to a folder with room, or "
                "restore with --jobs 1 (streamed, no local copy)."
            ) from exc
        if free < needed:
            raise BackupError(
                f"a parallel restore needs {_mib(needed)} free in {folder} for a "
                f"local copy of {item.name}, and only {_mib(free)} is free; free "
                "some space, set BACKUP_SPOOL_DIR to a folder with room, or restore "
                "with --jobs 1 (streamed, no local copy). The live database was not "
                "changed."
            )
        spooled = folder / item.name
        with open(spooled, "xb") as fh:
            digest = Digest(fh, progress)
            try:
                for chunk in storage.read_chunks(item.path):
                    digest.write(chunk)
            except OSError as exc:
                raise BackupError(
                    f"spooling {item.name} to {folder} failed ({describe(exc)}); "
                    "the live database was not changed."
                ) from exc
        check_checksum(item, digest)
        return spooled

    def _restore_file(
        self,
        item: BackupInfo,
        path: Path,
        target: str,
        jobs: int,
        progress: ProgressCallback | None,
        *,
        verified: bool = False,
    ) -> None:
        """Restore ``path`` with ``jobs`` jobs; check its SHA-256 meanwhile unless
        ``verified``. A mismatch stops the restore: the copy is never swapped in.

        An archive read here has its tables' data loaded by this process (pgload),
        after its schema and before its indexes, and ``progress`` follows that load
        (the rest of the archive counted once the indexes are built); any other goes
        to ``pg_restore --jobs`` whole, and ``progress`` follows the checksum's read,
        if any, as nothing else can be followed.
        """
        try:
            contents = read_contents(path)
        except (
            ArchiveError
        ):  # another layout, or damaged: pg_restore or the checksum say
            contents = None
        if contents is None:
            check = None if verified else lambda: self._check_file(item, path, progress)
            self._pg_restore(
                [*self._pg_restore_args(target, jobs), str(path)], check, jobs=jobs
            )
            return
        check = None if verified else lambda: self._check_file(item, path, None)
        # The checksum is read beside the whole restore and checked before the copy
        # can be swapped in; a mismatch stops the load at once, and explains a load
        # that failed on the same damage better than the server's error does.
        stop = threading.Event()
        checking = _Beside(check, stop)
        with tempfile.TemporaryDirectory(prefix="stagehand-restore-") as folder:
            try:
                self._pg_restore(
                    [
                        *self._pg_restore_args(target),
                        "--section=pre-data",
                        "--section=data",
                        f"--use-list={_listing(folder, 'data', contents.others)}",
                        str(path),
                    ]
                )
                self._load_then_post_data(
                    path, contents, target, jobs, stop, folder, progress
                )
            except BackupError:
                checking.result()
                raise
        checking.result()
        if progress is not None:
            progress(item.size)

    def _load_then_post_data(
        self,
        path: Path,
        contents,
        target: str,
        jobs: int,
        stop: threading.Event,
        folder: str,
        progress: ProgressCallback | None,
    ) -> None:
        """Load the tables' data (pgload), and build the indexes and constraints
        (``pg_restore --section=post-data``) in two runs: once every table's load has
        begun, the entries of the tables already loaded, beside the last loads
        (pgload.post_data_beside); once those and the loads are done, the rest.

        The last tables' entries alone may be one table's: its builds cannot run
        side by side (its primary key locks it), so they may use the server's
        parallel workers instead (restore_env).
        """
        held = threading.Event()
        loaded_then: list[frozenset[int]] = []

        def hold(loaded: frozenset[int]) -> None:
            loaded_then.append(loaded)
            held.set()

        loading = _Beside(
            lambda: pgload.load(
                path,
                contents,
                lambda: connect(self.settings_dict, target),
                jobs,
                stop=stop,
                held=hold,
                progress=progress,
            ),
            stop,
            finished=held,
        )
        args = [*self._pg_restore_args(target, jobs), "--section=post-data"]
        try:
            held.wait()
            if stop.is_set() or not loaded_then:  # failed, or nothing to load
                loading.result()
            every = frozenset(t.dump_id for t in contents.tables)
            loaded = loaded_then[0] if loaded_then else every
            beside = pgload.post_data_beside(contents, loaded)
            if beside:
                # pg_restore runs while the last loads finish; killed if one fails.
                listing = _listing(folder, "beside", beside)
                self._pg_restore(
                    [*args, f"--use-list={listing}", str(path)],
                    loading.result,
                    jobs=jobs,
                )
            else:
                loading.result()
            first = set(beside)
            rest = [i for i in contents.depends if i not in first]
            # The rest is the entries of the tables still loading at the first run.
            self._pg_restore(
                [*args, f"--use-list={_listing(folder, 'rest', rest)}", str(path)],
                jobs=max(1, min(jobs, len(every - loaded))),
            )
        except BaseException:
            stop.set()  # the other loads too, whatever stopped this one
            raise

    def _pg_restore(self, args: list[str], meanwhile=None, *, jobs: int = 1) -> None:
        """Run pg_restore with ``args`` (and ``meanwhile()`` while it runs); ``jobs``
        is how many of its sessions build side by side, for their settings
        (restore_env)."""
        with tempfile.TemporaryFile() as errors:
            process = self._start_pg_restore(args, errors, jobs)
            try:
                if meanwhile is not None:
                    meanwhile()
                returncode = process.wait()
            except BaseException:
                process.kill()
                process.wait()
                raise
            self._check_exit(returncode, errors)

    @staticmethod
    def _check_file(
        item: BackupInfo, path: Path, progress: ProgressCallback | None
    ) -> None:
        digest = Digest(Null(), progress)
        # Into one buffer: a new one for every read is fresh memory for the kernel
        # to map and zero, as much CPU as the hashing, beside the load.
        buffer = memoryview(bytearray(CHUNK))
        with open(path, "rb", buffering=0) as fh:
            while length := fh.readinto(buffer):
                digest.write(buffer[:length])
        check_checksum(item, digest)


class _Beside:
    """``work()`` in a thread beside the caller's; ``stop`` is set when it fails, and
    ``finished`` once it is done either way."""

    def __init__(
        self, work, stop: threading.Event, finished: threading.Event | None = None
    ) -> None:
        self.error: BaseException | None = None
        self.thread = None
        if work is None:
            return

        def run() -> None:
            try:
                work()
            except BaseException as exc:  # noqa: BLE001 - raised by result()
                self.error = exc
                stop.set()
            finally:
                if finished is not None:
                    finished.set()

        self.thread = threading.Thread(target=run, name="restore-check", daemon=True)
        self.thread.start()

    def result(self) -> None:
        """Wait for ``work()``; raise what it raised."""
        if self.thread is not None:
            self.thread.join()
        if self.error is not None:
            raise self.error


def _listing(folder: str, name: str, dump_ids) -> Path:
    """A --use-list file of ``dump_ids`` in ``folder``."""
    path = Path(folder) / f"{name}.list"
    path.write_text(pgload.use_list(dump_ids))
    return path


def _start_pg_dump(args: list[str], settings_dict: dict, errors) -> subprocess.Popen:
    try:
        return subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=errors, env=env(settings_dict)
        )
    except FileNotFoundError as exc:
        raise BackupError(
            "pg_dump is not installed; install the PostgreSQL client tools "
            "matching the server's major version."
        ) from exc


def _copy(source, out: Digest) -> None:
    while chunk := source.read(CHUNK):
        out.write(chunk)


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):,.0f} MiB"


class _Copy(SideCopy):
    def __init__(self, database: str, maintenance: psycopg.Connection, settings_dict):
        self.database = database
        self.maintenance = maintenance
        self.settings_dict = settings_dict
        self.swapped = False

    def swap_in(self, previous: str) -> None:
        live = connections[self.database].settings_dict["NAME"]
        swap(self.maintenance, live, self.settings_dict["NAME"], previous)
        self.swapped = True


def swap(maintenance, live: str, fresh: str, previous: str) -> None:
    """Rename ``live`` to ``previous`` and ``fresh`` to ``live`` in one transaction."""
    # This process's own connections would block the rename: close them first.
    for alias in connections:
        conn = connections[alias]
        if conn.vendor == "postgresql" and conn.settings_dict.get("NAME") in {
            live,
            fresh,
        }:
            conn.close()
    # Keep new sessions out while the old ones are terminated; an owner may do this,
    # and when the role may not, terminating and retrying below still works.
    try:
        maintenance.execute(
            f"ALTER DATABASE {quote(live)} WITH ALLOW_CONNECTIONS false"
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
                        f"ALTER DATABASE {quote(live)} RENAME TO {quote(previous)}"
                    )
                    maintenance.execute(
                        f"ALTER DATABASE {quote(fresh)} RENAME TO {quote(live)}"
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
                f"ALTER DATABASE {quote(live)} WITH ALLOW_CONNECTIONS true"
            )
        raise
    if blocked:
        maintenance.execute(
            f"ALTER DATABASE {quote(previous)} WITH ALLOW_CONNECTIONS true"
        )
