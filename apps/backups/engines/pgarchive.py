"""Compress a pg_dump custom-format archive on all cores, as it streams.

``pg_dump --format=custom`` compresses every table's data with zlib in its own single
process, and on a small machine that is the whole cost of a backup: about 16 of the
19 s of a 1 GiB database here, one core busy and the other mostly idle. So the backup
asks pg_dump for an uncompressed archive and compresses it here instead, in pieces on
a thread per core (zlib works without the GIL), the way pigz does: each piece is
deflated with the 32 KiB before it as its dictionary and ends on a byte boundary, so
the pieces, in order, are one ordinary zlib stream. The result is the archive pg_dump
would have written with its default compression (zlib level 6): the same header
(compression -1), the same table of contents, byte for byte, and every table's data
(and every large object) one zlib stream, which ``pg_restore`` reads like any other.

Only the archive versions read here field by field are compressed so (1.14: pg_dump
12 to 15); for any other, :class:`UnsupportedArchive` is raised before a byte is
written, and the caller lets pg_dump compress.

:func:`read_contents` reads the same versions' table of contents, and finds every
table's data in the archive, for a parallel restore's loader (``pgload``).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

# Archive versions whose header and table of contents are parsed below.
SUPPORTED = {(1, 14)}
MAGIC = b"PGDMP"
FORMAT_CUSTOM = 1
BLK_DATA, BLK_BLOBS = 1, 3
# What pg_dump writes for its default compression: Z_DEFAULT_COMPRESSION, level 6.
DEFAULT_COMPRESSION = -1
LEVEL = 6
# Uncompressed bytes per piece; a few pieces per thread are in flight at most, so
# memory stays a few MiB whatever the size of the database.
PIECE = 512 * 1024
WINDOW = 32 * 1024
READ = 256 * 1024
_INT = struct.Struct("<BI")  # pg_dump's int: a sign byte, then 4 bytes, low first
_ADLER_BASE = 65521


class ArchiveError(Exception):
    """pg_dump's output is not an archive this module can read."""


class UnsupportedArchive(ArchiveError):
    """An archive version or layout not parsed here; nothing was written."""


class Sink(Protocol):
    def write(self, data: bytes) -> None: ...


def write_int(value: int) -> bytes:
    return _INT.pack(1 if value < 0 else 0, abs(value))


def adler32_combine(first: int, second: int, second_length: int) -> int:
    """The Adler-32 of two byte strings joined, from theirs (zlib's adler32_combine)."""
    rem = second_length % _ADLER_BASE
    sum1 = first & 0xFFFF
    sum2 = (rem * sum1) % _ADLER_BASE
    sum1 += (second & 0xFFFF) + _ADLER_BASE - 1
    sum2 += (first >> 16) + (second >> 16) + _ADLER_BASE - rem
    if sum1 >= _ADLER_BASE:
        sum1 -= _ADLER_BASE
    if sum1 >= _ADLER_BASE:
        sum1 -= _ADLER_BASE
    if sum2 >= _ADLER_BASE << 1:
        sum2 -= _ADLER_BASE << 1
    if sum2 >= _ADLER_BASE:
        sum2 -= _ADLER_BASE
    return sum1 | (sum2 << 16)


def _deflate(data: bytes, window: bytes, final: bool) -> tuple[bytes, int, int]:
    """Deflate one piece (raw, primed with ``window``); return it, its Adler-32 and
    its uncompressed length."""
    args = (window,) if window else ()
    compressor = zlib.compressobj(
        LEVEL, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, *args
    )
    out = compressor.compress(data) + compressor.flush(
        zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH
    )
    return out, zlib.adler32(data), len(data)


class _Reader:
    def __init__(self, source: BinaryIO):
        self.source = source
        self.buf = b""
        self.pos = 0
        self.off_size = 8

    def fill(self, n: int) -> None:
        if len(self.buf) - self.pos < n:
            more = self.source.read(max(n, READ))
            self.buf = self.buf[self.pos :] + more
            self.pos = 0
            if len(self.buf) < n:
                raise ArchiveError("the archive ends in the middle (truncated)")

    def take(self, n: int) -> bytes:
        self.fill(n)
        data = self.buf[self.pos : self.pos + n]
        self.pos += n
        return data

    def int(self) -> tuple[bytes, int]:
        raw = self.take(_INT.size)
        sign, value = _INT.unpack(raw)
        return raw, -value if sign else value

    def string(self) -> bytes:
        raw, length = self.int()
        return raw + self.take(length) if length > 0 else raw

    def at_end(self) -> bool:
        if len(self.buf) > self.pos:
            return False
        self.buf, self.pos = self.source.read(READ), 0
        return not self.buf


def compress_archive(
    source: BinaryIO, out: Sink, *, threads: int | None = None
) -> None:
    """Read an uncompressed custom-format archive from ``source``, write it to
    ``out`` with every data stream zlib-compressed on ``threads`` threads (default:
    the number of cores).

    Raise UnsupportedArchive before writing anything when the archive is not a
    version parsed here, ArchiveError when it is malformed or ends early.
    """
    reader = _Reader(source)
    header = _read_header(reader)
    with ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
        _Compressor(reader, out, pool, threads or os.cpu_count() or 1).run(header)


def _read_start(reader: _Reader) -> tuple[bytes, int]:
    """Read the header up to its compression; return its bytes before that, and the
    compression. Raise UnsupportedArchive for a version or layout not parsed here."""
    start = reader.take(len(MAGIC) + 6)  # an empty output: pg_dump failed
    if start[:5] != MAGIC:
        raise UnsupportedArchive("not a pg_dump archive")
    vmaj, vmin, _vrev, int_size, off_size, fmt = start[5:11]
    if (vmaj, vmin) not in SUPPORTED or int_size != 4 or fmt != FORMAT_CUSTOM:
        raise UnsupportedArchive(
            f"archive version {vmaj}.{vmin} (int {int_size}, format {fmt}) is not "
            "parsed here"
        )
    reader.off_size = off_size
    return start, reader.int()[1]


def _read_header(reader: _Reader) -> bytes:
    """Return the header with its compression set to pg_dump's default."""
    start, compression = _read_start(reader)
    if compression != 0:
        raise UnsupportedArchive("the archive is compressed already")
    return start + write_int(DEFAULT_COMPRESSION)


class _Compressor:
    def __init__(self, reader: _Reader, out: Sink, pool: ThreadPoolExecutor, n: int):
        self.reader = reader
        self.out = out
        self.pool = pool
        self.in_flight = n + 1
        self.pending: deque[Callable[[], None]] = deque()

    def copy_int(self) -> int:
        raw, value = self.reader.int()
        self.out.write(raw)
        return value

    def copy_string(self) -> None:
        self.out.write(self.reader.string())

    def run(self, header: bytes) -> None:
        reader = self.reader
        self.out.write(header)
        for _ in range(7):  # creation time: sec, min, hour, day, month, year, dst
            self.copy_int()
        for _ in range(3):  # database name, server version, pg_dump version
            self.copy_string()
        for _ in range(self.copy_int()):  # the table of contents, copied as it is
            self.copy_int()  # dump id
            self.copy_int()  # has data
            # table oid, oid, tag, desc
            for _ in range(4):
                self.copy_string()
            self.copy_int()  # section
            # definition, drop, copy statement, schema, tablespace, table access
            # method, owner, "with oids"
            for _ in range(8):
                self.copy_string()
            while True:  # dependencies, up to a NULL string
                raw, length = reader.int()
                self.out.write(raw + reader.take(length) if length > 0 else raw)
                if length < 0:
                    break
            self.out.write(reader.take(1 + reader.off_size))  # data offset (unset)
        while not reader.at_end():
            kind = reader.take(1)
            self.out.write(kind)
            self.copy_int()  # dump id
            if kind[0] == BLK_DATA:
                self.stream()
            elif kind[0] == BLK_BLOBS:
                while self.copy_int() != 0:  # each large object's oid, then data
                    self.stream()
            else:
                raise ArchiveError(f"unknown data block type {kind[0]}")

    def stream(self) -> None:
        """Compress one run of data chunks (up to the 0 that ends it) as one zlib
        stream, in pieces deflated side by side and written in order."""
        reader = self.reader
        adler = [1]
        window = b""
        parts: list[bytes] = []
        size = 0

        def submit(final: bool) -> None:
            nonlocal window, parts, size
            data = b"".join(parts)
            future = self.pool.submit(_deflate, data, window, final)
            self.pending.append(lambda: self._write_piece(future, adler))
            window, parts, size = data[-WINDOW:], [], 0
            self._drain(self.in_flight)

        self._chunk(b"\x78\x9c")  # zlib header: deflate, 32 KiB window
        # One chunk per row from pg_dump: the loop keeps the buffer in locals and
        # goes back to the reader only when a chunk runs past what it holds.
        unpack, int_size = _INT.unpack_from, _INT.size
        buf, pos = reader.buf, reader.pos
        while True:
            if len(buf) - pos < int_size:
                reader.pos = pos
                reader.fill(int_size)
                buf, pos = reader.buf, reader.pos
            _sign, length = unpack(buf, pos)
            pos += int_size
            if length == 0:
                break
            if len(buf) - pos < length:
                reader.pos = pos
                reader.fill(length)
                buf, pos = reader.buf, reader.pos
            parts.append(buf[pos : pos + length])
            pos += length
            size += length
            if size >= PIECE:
                submit(final=False)
        reader.pos = pos
        submit(final=True)
        self._drain(0)
        self._chunk(adler[0].to_bytes(4, "big"))
        self.out.write(write_int(0))

    def _write_piece(self, future: Future, adler: list[int]) -> None:
        data, piece_adler, length = future.result()
        adler[0] = adler32_combine(adler[0], piece_adler, length)
        self._chunk(data)

    def _chunk(self, data: bytes) -> None:
        if data:  # a zero length would end the stream
            self.out.write(write_int(len(data)) + data)

    def _drain(self, keep: int) -> None:
        while len(self.pending) > keep:
            self.pending.popleft()()


# No chunk pg_dump (4 KiB compressed, a row uncompressed) or compress_archive (a piece)
# writes comes near this: a longer one is a damaged archive, not an allocation.
MAX_CHUNK = 256 * 1024 * 1024
# Sections of a table of contents entry, and the states of its data offset.
SECTION_NONE, SECTION_PRE_DATA, SECTION_DATA, SECTION_POST_DATA = 1, 2, 3, 4
_OFFSET_SET, _NO_DATA = 2, 3


@dataclass(frozen=True)
class TableData:
    """One table's data in an archive: its COPY and where its chunks start."""

    dump_id: int
    schema: str
    table: str
    copy: str  # "COPY schema.table (columns) FROM stdin", without the ";"
    offset: int  # of the first chunk's length, just past the block's header
    size: int  # the chunks' bytes, as stored (compressed or not)


@dataclass(frozen=True)
class Contents:
    """What a parallel load needs from an archive's header and table of contents."""

    compression: int  # 0: none; -1 to 9: zlib
    encoding: str  # of the COPY data (the ENCODING entry)
    std_strings: str  # "on" or "off" (the STDSTRINGS entry)
    tables: list[TableData]  # largest first
    others: list[int]  # every other entry before post-data, in archive order
    post_data: list[int] = field(default_factory=list)  # in archive order
    # Every entry's dependencies (dump ids), as pg_dump recorded them.
    depends: dict[int, tuple[int, ...]] = field(default_factory=dict)


def read_contents(path) -> Contents:
    """Read the header and table of contents of the archive at ``path`` (a seekable
    file), and find every table's data in it.

    Raise UnsupportedArchive for an archive version or compression not read here,
    ArchiveError when it is malformed or ends early.
    """
    with open(path, "rb") as fh:
        reader = _Reader(fh)
        _start, compression = _read_start(reader)
        off_size = reader.off_size
        if not -1 <= compression <= 9:
            raise UnsupportedArchive(f"compression {compression} is not zlib")
        for _ in range(7):  # creation time
            reader.int()
        for _ in range(3):  # database name, server version, pg_dump version
            reader.string()
        encoding, std_strings = "UTF8", "on"
        tables: dict[int, list] = {}
        others: list[int] = []
        post_data: list[int] = []
        depends: dict[int, tuple[int, ...]] = {}
        # An entry of no section (a comment, a security label) is in the section of
        # the entry before it, as pg_restore counts it: a comment on an index is
        # post-data, restored after its index.
        current = SECTION_PRE_DATA
        for _ in range(reader.int()[1]):
            dump_id = reader.int()[1]
            reader.int()  # has data
            _table_oid, _oid, tag, desc = (_text(reader.string()) for _ in range(4))
            section = reader.int()[1]
            if section != SECTION_NONE:
                current = section
            defn, _drop, copy, schema = (_text(reader.string()) for _ in range(4))
            for _ in range(4):  # tablespace, table access method, owner, with oids
                reader.string()
            depends[dump_id] = tuple(_dependencies(reader))
            flag = reader.take(1)[0]
            offset = int.from_bytes(reader.take(off_size), "little")
            if desc == "ENCODING":
                encoding = _quoted(defn, encoding)
            elif desc == "STDSTRINGS":
                std_strings = _quoted(defn, std_strings)
            if desc == "TABLE DATA" and flag != _NO_DATA:
                statement = copy.strip().rstrip(";").rstrip()
                if not statement.upper().startswith("COPY "):
                    raise UnsupportedArchive(f"table data of {tag} without a COPY")
                set_offset = offset if flag == _OFFSET_SET else None
                tables[dump_id] = [schema, tag, statement, set_offset]
            elif current < SECTION_POST_DATA and dump_id > 0:
                others.append(dump_id)
            elif current == SECTION_POST_DATA:
                post_data.append(dump_id)
        data_start = fh.tell() - (len(reader.buf) - reader.pos)
        located = _locate_blocks(fh, data_start, tables)
    found = [
        TableData(dump_id, schema, table, statement, *located[dump_id])
        for dump_id, (schema, table, statement, _offset) in tables.items()
    ]
    found.sort(key=lambda t: (-t.size, t.dump_id))
    return Contents(
        compression, encoding, std_strings, found, others, post_data, depends
    )


def _dependencies(reader: _Reader) -> Iterator[int]:
    """An entry's dependencies: dump ids written as strings, up to a NULL one."""
    while (length := reader.int()[1]) >= 0:
        raw = reader.take(length)
        try:
            yield int(raw)
        except ValueError:
            raise ArchiveError(
                f"a dependency {raw[:20]!r} that is no dump id"
            ) from None


def _text(raw: bytes) -> str:
    try:
        return raw[_INT.size :].decode("utf-8")
    except UnicodeDecodeError:  # a name in another server encoding: pg_restore's
        raise UnsupportedArchive("names that are not UTF-8") from None


def _quoted(defn: str, default: str) -> str:
    """The value in ``SET name = 'value';``."""
    first, quote, rest = defn.partition("'")
    return rest.split("'", 1)[0] if quote else default


def _locate_blocks(
    fh: BinaryIO, data_start: int, tables: dict[int, list]
) -> dict[int, tuple[int, int]]:
    """(offset of the first chunk, bytes of the chunks) of every table's data block:
    from the offsets in the table of contents when pg_dump could write them (-f), else
    by walking the data blocks from ``data_start`` (a dump written to a pipe)."""

    def chunks_at(position: int) -> tuple[int, int]:
        fh.seek(position)
        size = 0
        while True:
            header = fh.read(_INT.size)
            if len(header) < _INT.size:
                raise ArchiveError("the archive ends in the middle (truncated)")
            length = _INT.unpack(header)[1]
            if length == 0:
                return position, size
            if length > MAX_CHUNK:
                raise ArchiveError(f"a chunk of {length} bytes (damaged)")
            size += length
            fh.seek(length, os.SEEK_CUR)

    def block_header() -> tuple[int, int] | None:
        head = fh.read(1 + _INT.size)
        if not head:
            return None
        if len(head) < 1 + _INT.size:
            raise ArchiveError("the archive ends in the middle (truncated)")
        return head[0], _INT.unpack_from(head, 1)[1]

    located: dict[int, tuple[int, int]] = {}
    if all(entry[3] is not None for entry in tables.values()):
        for dump_id, entry in tables.items():
            fh.seek(entry[3])
            kind, found = block_header() or (None, None)
            if kind != BLK_DATA or found != dump_id:
                raise ArchiveError(f"no data block for entry {dump_id} at its offset")
            located[dump_id] = chunks_at(entry[3] + 1 + _INT.size)
        return located
    fh.seek(data_start)
    while (header := block_header()) is not None:
        kind, dump_id = header
        position = fh.tell()
        if kind == BLK_DATA:
            located[dump_id] = chunks_at(position)
        elif kind == BLK_BLOBS:
            while True:  # each large object's oid, then its chunks, up to oid 0
                oid = fh.read(_INT.size)
                if len(oid) < _INT.size:
                    raise ArchiveError("the archive ends in the middle (truncated)")
                if _INT.unpack(oid)[1] == 0:
                    break
                chunks_at(fh.tell())
        else:
            raise ArchiveError(f"unknown data block type {kind}")
    missing = set(tables) - set(located)
    if missing:
        raise ArchiveError(f"no data block for entries {sorted(missing)}")
    return located
