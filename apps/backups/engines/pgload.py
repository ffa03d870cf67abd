"""The table data of a parallel restore, loaded from here instead of by pg_restore.

``pg_restore --jobs N`` inflates every table's data with zlib in its own processes,
beside the server's ``COPY``: a sixth of a restore's work on a small machine, and on
two cores a restore is bound by work, not by waiting. So an archive read field by
field here (``pgarchive.read_contents``) is restored in three steps:

1. ``pg_restore``, one job: the schema and the data that is no table's (sequence
   values, large objects), every entry before the post-data section but the tables'
   data;
2. every table's data from this process, on N connections side by side, largest
   table first, inflated with ISA-L (``isal``, about 3x zlib's speed here; zlib when
   it is not installed) in threads without the GIL; each table's ``COPY`` runs in the
   transaction that empties it (it is empty anyway), so that ``COPY ... (FREEZE)``
   writes its rows frozen and its pages all-visible: the index builds that follow
   need not set hint bits on every row, nor the first VACUUM freeze them all;
3. ``pg_restore --section=post-data --jobs N``: indexes, constraints, triggers.

The sessions are set up as pg_restore sets up its own (encoding, search path, no
row security). A table the server will not COPY FREEZE into (a partitioned table's
root, with pg_dump --load-via-partition-root) is loaded without it.
"""

from __future__ import annotations

import queue
import threading
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator

import psycopg
from psycopg import sql

from ..errors import BackupDamaged, BackupError, describe
from .pgarchive import _INT, MAX_CHUNK, ArchiveError, Contents, TableData

try:  # ISA-L's inflater (the same zlib streams, about 3x the speed), else zlib's
    from isal import igzip_lib as _igzip
except ImportError:  # pragma: no cover - isal is in requirements/base.txt
    _igzip = None

# The most bytes of rows inflated and sent to the server at a time (below malloc's
# threshold for memory mapped afresh, and psycopg's for slicing a write into copies),
# and the read buffer's first size (our archives' chunks are up to about 200 KiB,
# pg_dump's own 4 KiB).
SEND = 64 * 1024
CHUNK = 1024 * 1024


def use_list(dump_ids: Iterable[int]) -> str:
    """A pg_restore --use-list of the entries ``dump_ids``."""
    return "".join(f"{dump_id};\n" for dump_id in dump_ids)


def post_data_beside(contents: Contents, loaded: Collection[int]) -> list[int]:
    """The post-data entries that can be restored while the tables whose data is not
    in ``loaded`` (dump ids of table data) still load: those that depend on no such
    table, directly or through other entries (an index on a loaded table, but not a
    foreign key to one still loading, nor the refresh of a view of one).

    pg_restore --jobs takes its post-data entries in archive order, not in the order
    the tables are loaded: given them all, it starts builds that wait for the last
    loads while others could run, and leaves the first tables' builds to the end.
    """
    dependents: dict[int, list[int]] = {}
    for dump_id, depends in contents.depends.items():
        for dependency in depends:
            dependents.setdefault(dependency, []).append(dump_id)
    waiting = [t.dump_id for t in contents.tables if t.dump_id not in loaded]
    for dump_id in list(waiting):  # and the tables themselves (their TABLE entries)
        waiting.extend(contents.depends.get(dump_id, ()))
    blocked = set(waiting)
    while waiting:
        for dependent in dependents.get(waiting.pop(), ()):
            if dependent not in blocked:
                blocked.add(dependent)
                waiting.append(dependent)
    return [dump_id for dump_id in contents.post_data if dump_id not in blocked]


def load(
    path,
    contents: Contents,
    connect: Callable[[], psycopg.Connection],
    jobs: int,
    *,
    stop: threading.Event | None = None,
    held: Callable[[frozenset[int]], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Load every table's data from the archive at ``path`` on ``jobs`` connections
    made by ``connect``, largest table first; all stop at the first failure, or once
    ``stop`` is set.

    ``progress(read)`` follows the bytes of the archive read for the tables' rows,
    a running total, from one loading thread at a time.

    ``held(loaded)`` is called once, from a loading thread, when every table's load
    has begun: each table is then either loaded (its data's dump id is in ``loaded``)
    or locked by the transaction loading it, so that another session's statement on
    it (an index build) waits for its rows instead of finding it empty.

    Raise BackupDamaged when a table's rows do not load (the server refuses them, or
    they do not inflate), BackupError when a connection fails or it was stopped.
    """
    work: queue.SimpleQueue[TableData] = queue.SimpleQueue()
    for table in contents.tables:
        work.put(table)
    failures: list[BaseException] = []
    stop = stop or threading.Event()
    waiting = [len(contents.tables)]  # tables whose load has not begun
    loaded: set[int] = set()  # committed
    counting = threading.Lock()
    read = [0]  # bytes of the archive, for progress

    def report(amount: int) -> None:
        with counting:  # one at a time, so that the running total only grows
            read[0] += amount
            if progress is not None:
                progress(read[0])

    def begun() -> None:
        with counting:
            waiting[0] -= 1
            last = waiting[0] == 0
            done = frozenset(loaded)
        if last and held is not None:
            held(done)

    def worker() -> None:
        table = None
        try:
            with connect() as conn, open(path, "rb", buffering=0) as fh:
                _set_up(conn, contents)
                while not stop.is_set():
                    try:
                        table = work.get_nowait()
                    except queue.Empty:
                        return
                    _load_table(
                        conn, fh, table, contents.compression, stop, begun, report
                    )
                    with counting:
                        loaded.add(table.dump_id)
        except BaseException as exc:  # noqa: BLE001 - raised by the caller's thread
            failures.append(_as_backup_error(exc, table))
            stop.set()

    threads = [
        threading.Thread(target=worker, name=f"restore-load-{n}", daemon=True)
        for n in range(max(1, min(jobs, len(contents.tables))))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    if stop.is_set():  # by the caller, between two tables
        raise BackupError("the load of the tables' data was stopped")


def _set_up(conn: psycopg.Connection, contents: Contents) -> None:
    """The session pg_restore would have: the archive's encoding and string syntax,
    no search path (the COPY names its schema), no row security, no timeouts."""
    for name, value in (
        ("statement_timeout", "0"),
        ("lock_timeout", "0"),
        ("idle_in_transaction_session_timeout", "0"),
        ("client_encoding", contents.encoding),
        ("standard_conforming_strings", contents.std_strings),
        ("search_path", ""),
        ("check_function_bodies", "false"),
        ("xmloption", "content"),
        ("row_security", "off"),
        # Only the new database is written: see postgresql.restore_env.
        ("synchronous_commit", "off"),
    ):
        conn.execute("SELECT pg_catalog.set_config(%s, %s, false)", [name, value])


def _load_table(
    conn: psycopg.Connection,
    fh,
    table: TableData,
    compression: int,
    stop: threading.Event,
    begun: Callable[[], None],
    report: Callable[[int], None],
) -> None:
    """Load one table; ``begun()`` once its COPY has begun (the table locked),
    ``report(bytes)`` for each chunk of the archive read."""
    truncate = sql.SQL("TRUNCATE ONLY {}").format(
        sql.Identifier(table.schema, table.table)
    )
    started = False

    def copying() -> None:
        nonlocal started
        if not started:
            started = True
            begun()

    frozen = f"{table.copy} (FREEZE)"
    try:
        with conn.transaction():
            conn.execute(truncate)
            _copy(conn, fh, table, compression, stop, frozen, copying, report)
        return
    except (
        psycopg.errors.FeatureNotSupported,
        psycopg.errors.ObjectNotInPrerequisiteState,
        psycopg.errors.WrongObjectType,
    ):
        pass  # not a table COPY FREEZE can fill (a partitioned one): as pg_restore
    with conn.transaction():
        _copy(conn, fh, table, compression, stop, table.copy, copying, report)


def _copy(
    conn,
    fh,
    table: TableData,
    compression: int,
    stop,
    statement: str,
    begun,
    report: Callable[[int], None],
) -> None:
    """Send the table's chunks, inflated, into ``statement`` (a COPY FROM stdin);
    call ``begun()`` once the server has begun it, ``report(bytes)`` for each chunk
    of the archive read.

    The chunks are read into one reused buffer, and the rows inflated and sent in
    pieces of at most SEND bytes, each sent as it comes: fresh memory for every chunk
    read or every piece (a growing buffer, a copy of the input left over) cost as much
    CPU as ISA-L's inflating, in page faults on newly mapped memory.
    """
    fh.seek(table.offset)
    inflater = _Inflater() if compression != 0 else None
    header = bytearray(_INT.size)
    buffer = bytearray(CHUNK)
    with conn.cursor() as cur, cur.copy(statement) as copy:
        begun()
        write = copy.write  # each piece copied into libpq's buffer before it returns
        while True:
            if fh.readinto(header) != _INT.size:
                raise ArchiveError("the archive ends in the middle (truncated)")
            length = _INT.unpack(header)[1]
            if not length:
                break
            if stop.is_set():
                raise BackupError("the load of the tables' data was stopped")
            if length > len(buffer):
                if length > MAX_CHUNK:
                    raise ArchiveError(f"a chunk of {length} bytes (damaged)")
                buffer = bytearray(length)
            chunk = memoryview(buffer)[:length]
            if fh.readinto(chunk) != length:
                raise ArchiveError("the archive ends in the middle (truncated)")
            report(_INT.size + length)
            if inflater is None:
                write(chunk)
            else:
                for piece in inflater.pieces(chunk):
                    write(piece)
        if inflater is not None:
            write(inflater.finish())


class _Inflater:
    """A table's zlib stream, inflated chunk by chunk into pieces of at most SEND
    bytes (a chunk of rows that compress well inflates to any size): with ISA-L,
    which keeps what is left of a chunk itself, copied once; else with zlib, which
    hands it back to be passed in again."""

    def __init__(self) -> None:
        self._isal = _igzip is not None
        if self._isal:
            self._stream = _igzip.IgzipDecompressor(flag=_igzip.DECOMP_ZLIB)
        else:
            self._stream = zlib.decompressobj()

    def pieces(self, chunk) -> Iterator[bytes]:
        stream = self._stream
        if self._isal:
            yield stream.decompress(chunk, SEND)
            while not stream.needs_input and not stream.eof:
                yield stream.decompress(b"", SEND)
            return
        yield stream.decompress(chunk, SEND)
        while tail := stream.unconsumed_tail:
            yield stream.decompress(tail, SEND)

    def finish(self) -> bytes:
        """The last rows, once every chunk was passed in; raise ArchiveError when the
        stream was cut short."""
        last = b"" if self._isal else self._stream.flush()
        if not self._stream.eof:
            raise ArchiveError("a table's zlib stream ends early (truncated)")
        return last


def _as_backup_error(exc: BaseException, table: TableData | None) -> BaseException:
    """What a worker's failure means for the restore (loading ``table``, if any)."""
    if isinstance(exc, BackupError) or not isinstance(exc, Exception):
        return exc
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        return BackupError(
            f"loading the tables' data into the new database failed "
            f"({describe(exc)}); check that the server answers and restore again. "
            "The live database was not changed."
        )
    rows = f"{table.schema}.{table.table}" if table else "its tables"
    return BackupDamaged(
        f"the backup's rows of {rows} do not load ({describe(exc)}); the live "
        "database was not changed."
    )
