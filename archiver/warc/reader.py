"""Reading WARC records as streams: a record's headers, then its block in chunks, with the
block and payload digests it declares computed on the way, so that a record of any size (a
video of several gigabytes in an imported WACZ) is read and checked in bounded memory.

A gzipped WARC is read gzip member by gzip member (one record per member, as the WARC standard
recommends and as addressing a record by offset needs); an uncompressed one record by record.
The payload of an HTTP response is the entity body after the HTTP headers.  When that body is
chunked, tools disagree on whether the payload digest covers the chunked or the de-chunked
bytes (warcio and wget digest what is stored, the chunked form), so either is accepted.

``archiver verify`` and ``archiver import`` read records through this module; replay and
export read single records through warcio (``store.open_record``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from warcio.statusandheaders import (
    StatusAndHeaders,
    StatusAndHeadersParser,
    StatusAndHeadersParserException,
)

from archiver.errors import StorageError
from archiver.net.content import GZIP_MAGIC

RECORD_TRAILER = b"\r\n\r\n"
CHUNK = 1 << 16
GZIP_MEMBER_START = b"\x1f\x8b\x08"  # gzip magic and the deflate method
_SEARCH_CHUNK = 1 << 20  # bytes searched at a time for the start of a whole gzip member
_MAX_LINE = 1 << 16
_MAX_HEADER_BYTES = 1 << 20  # of a record's WARC headers, and of the HTTP head in its block
_MAX_CHUNK_SIZE_LINE = 64  # as warcio reads a chunk-size line
_WARC_PARSER = StatusAndHeadersParser(["WARC/1.1", "WARC/1.0", "WARC/0.18", "WARC/0.17"])
_HTTP_PARSER = StatusAndHeadersParser([], verify=False)


class Readable(Protocol):
    """Anything bytes are read from: a file, a network body, a gzip member."""

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes; b"" at the end."""
        ...


class LineReadable(Readable, Protocol):
    """A readable that also reads lines."""

    def readline(self, size: int = -1, /) -> bytes:
        """The next line, at most ``size`` bytes; b"" at the end."""
        ...


class ScanError(StorageError):
    """A WARC file cannot be read past ``offset``."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(f"{message} (at byte {offset})")
        self.offset = offset
        self.reason = message


class UnknownDigestAlgorithm(StorageError):
    """A declared digest whose algorithm this Python cannot compute."""


@dataclass(frozen=True)
class DigestCheck:
    """What checking a record's declared block and payload digests found."""

    mismatches: list[str]  # declared digests that the bytes do not have
    unchecked: list[str]  # declared digests that could not be computed here


@dataclass(frozen=True)
class ParsedRecord:
    """One WARC record read to its end: its WARC headers, the start of its block (the HTTP
    head of an ``application/http`` record), the block's length and what its digests say."""

    headers: StatusAndHeaders
    head: bytes
    length: int
    digests: DigestCheck

    def header(self, name: str) -> str | None:
        """A WARC header's value, or None."""
        value: str | None = self.headers.get_header(name)
        return value

    @property
    def rec_type(self) -> str:
        """The WARC-Type."""
        return self.header("WARC-Type") or ""

    @property
    def target_uri(self) -> str:
        """The URI of the record, as the index keeps it (``record_uri``)."""
        return record_uri(self.header("WARC-Target-URI"))

    def http_headers(self) -> StatusAndHeaders | None:
        """The HTTP status line and headers at the start of an ``application/http`` block,
        or None when it has none (or they cannot be parsed)."""
        if not self.head or not (self.header("Content-Type") or "").lower().startswith(
                "application/http"):
            return None
        try:
            parsed: StatusAndHeaders = _HTTP_PARSER.parse(io.BytesIO(self.head))
        except (StatusAndHeadersParserException, EOFError, ValueError):
            return None
        return parsed


@dataclass(frozen=True)
class ScannedRecord:
    """A record and where its bytes (gzip member or plain record) sit in its file."""

    offset: int
    length: int
    record: ParsedRecord


def strip_brackets(uri: str) -> str:
    """``<http://x/>`` -> ``http://x/`` (WARC/1.0 allowed the brackets)."""
    uri = uri.strip()
    return uri[1:-1] if uri.startswith("<") and uri.endswith(">") else uri


def record_uri(value: str | None) -> str:
    """The URI of a record from its WARC-Target-URI, the one rule the index, reindex and
    verify share: no angle brackets, and spaces (invalid in a URI, but written by some tools)
    percent-encoded as warcio encodes them when replay reads the record."""
    return strip_brackets(value or "").replace(" ", "%20")


# -- streams --------------------------------------------------------------------------------

class Limited:
    """The next ``length`` bytes of a readable, and no more."""

    def __init__(self, source: Readable, length: int) -> None:
        self._source = source
        self._left = length

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes of what is left (all of it when ``size`` is negative)."""
        size = self._left if size < 0 else min(size, self._left)
        data = self._source.read(size) if size > 0 else b""
        self._left -= len(data)
        return data


class LineReader:
    """Buffered reading, with ``readline``, of a readable; counts the bytes it handed out."""

    def __init__(self, source: Readable) -> None:
        self._source = source
        self._buffer = b""
        self.consumed = 0

    def _take(self, size: int) -> bytes:
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        self.consumed += len(data)
        return data

    def readline(self, size: int = -1, /) -> bytes:
        """The next line (with its newline), at most ``size`` bytes; b"" at the end."""
        limit = size if size >= 0 else 1 << 62
        while True:
            end = self._buffer.find(b"\n", 0, limit)
            if end >= 0:
                return self._take(end + 1)
            if len(self._buffer) >= limit:
                return self._take(limit)
            more = self._source.read(CHUNK)
            if not more:
                return self._take(limit)
            self._buffer += more

    def peek(self, size: int) -> bytes:
        """The next ``size`` bytes (fewer only at the end), left to be read."""
        while len(self._buffer) < size:
            more = self._source.read(CHUNK)
            if not more:
                break
            self._buffer += more
        return self._buffer[:size]

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes (fewer only at the end)."""
        if size < 0:
            rest = self._buffer + b"".join(iter(lambda: self._source.read(CHUNK), b""))
            self._buffer = rest
            return self._take(len(rest))
        while len(self._buffer) < size:
            more = self._source.read(max(CHUNK, size - len(self._buffer)))
            if not more:
                break
            self._buffer += more
        return self._take(size)


class GzipMember(io.RawIOBase):
    """The decompressed bytes of the one gzip member that starts where ``handle`` stands.

    ``finish()`` reads to the member's end and gives its compressed length; the input read
    past the member is kept in ``rest`` (the start of whatever follows).
    """

    def __init__(self, handle: Readable, pending: bytes = b"", *, where: int = 0) -> None:
        self._handle = handle
        self._pending = pending
        self._inflater = zlib.decompressobj(wbits=31)
        self._fed = 0
        self._where = where
        self.stream = io.BufferedReader(self, CHUNK)  # the decompressed bytes, with readline

    def readable(self) -> bool:
        """Always: a member is read, never written."""
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        """Decompress into ``buffer``; 0 at the member's end."""
        while not self._inflater.eof:
            data = self._inflater.unconsumed_tail
            if not data:
                data = self._pending or self._handle.read(CHUNK)
                self._pending = b""
                if not data:
                    raise ScanError(self._where, "file ends inside a gzip member (partial tail)")
                self._fed += len(data)
            try:
                output = self._inflater.decompress(data, len(buffer))
            except zlib.error as exc:
                raise ScanError(self._where, f"corrupt gzip data: {exc}") from exc
            if output:
                buffer[:len(output)] = output
                return len(output)
        return 0

    def finish(self) -> int:
        """Read to the member's end; its compressed length."""
        while self.read(CHUNK):
            pass
        return self._fed - len(self._inflater.unused_data)

    @property
    def rest(self) -> bytes:
        """Input read past the member's end (only once ``finish()`` returned)."""
        return self._inflater.unused_data


def iter_gzip_members(handle: Readable, start: int = 0) -> Iterator[tuple[int, GzipMember]]:
    """(offset, member) of each gzip member of a file read from byte ``start`` (where the
    handle stands), in order.  Whatever of a member is left unread is read (and decompressed)
    before the next one starts."""
    offset = start
    pending = b""
    while True:
        if not pending:
            pending = handle.read(CHUNK)
            if not pending:
                return
        member = GzipMember(handle, pending, where=offset)
        yield offset, member
        offset += member.finish()
        pending = member.rest


def member_record_id(member: GzipMember) -> str | None:
    """WARC-Record-ID of the one whole record a gzip member holds ('' if it is empty; None if
    it is not one whole record)."""
    try:
        record = read_record(member.stream, check=False)
        if record is not None and member.stream.read(1):
            return None
    except StorageError:
        return None
    return "" if record is None else (record.header("WARC-Record-ID") or "")


def whole_member_at(handle: BinaryIO, offset: int) -> tuple[int, str] | None:
    """(length, record ID) of a whole gzip member holding one whole record at ``offset``."""
    handle.seek(offset)
    try:
        for _start, member in iter_gzip_members(handle):
            record_id = member_record_id(member)
            return None if record_id is None else (member.finish(), record_id)
    except StorageError:
        return None
    return None


def next_whole_member(handle: BinaryIO, after: int) -> int | None:
    """Where the first whole gzip member holding one whole record begins after byte ``after``
    (whole records after damage); None when none does."""
    size = os.fstat(handle.fileno()).st_size
    position = after + 1
    while position < size:
        handle.seek(position)
        chunk = handle.read(_SEARCH_CHUNK + len(GZIP_MEMBER_START) - 1)
        found = chunk.find(GZIP_MEMBER_START)
        while 0 <= found < _SEARCH_CHUNK:
            if whole_member_at(handle, position + found) is not None:
                return position + found
            found = chunk.find(GZIP_MEMBER_START, found + 1)
        position += _SEARCH_CHUNK
    return None


# -- digests --------------------------------------------------------------------------------

def _hash_name(algorithm: str) -> str:
    """The hashlib name of a WARC digest algorithm (``sha1``, ``SHA-256``...)."""
    name = algorithm.lower().replace("-", "")
    try:
        fixed_size = name in hashlib.algorithms_available and hashlib.new(name).digest_size > 0
    except ValueError:  # listed, but this OpenSSL build refuses it
        fixed_size = False
    if not fixed_size:  # unknown, or an extendable-output hash (shake) with no fixed digest
        raise UnknownDigestAlgorithm(f"unknown digest algorithm {algorithm!r}")
    return name


def _declared_value_matches(value: str, raw: bytes) -> bool:
    """Whether a declared digest value (base32, hex or base64) is ``raw``."""
    value = value.strip()
    if value.upper().rstrip("=") in {base64.b32encode(raw).decode().rstrip("="),
                                     raw.hex().upper()}:
        return True
    try:
        return base64.b64decode(value, validate=True) == raw
    except (binascii.Error, ValueError):
        return False


class _Digest:
    """One declared digest (``algorithm:value``) and a hash of each form of the bytes it may
    have been computed over."""

    def __init__(self, kind: str, declared: str, forms: int = 1) -> None:
        self.kind = kind
        self.declared = declared
        algorithm, _, self.value = declared.strip().partition(":")
        name = _hash_name(algorithm)
        self.forms = [hashlib.new(name) for _ in range(forms)]

    def matches(self, forms: list[int]) -> bool:
        """Whether one of the given forms of the bytes has the declared digest."""
        return any(_declared_value_matches(self.value, self.forms[index].digest())
                   for index in forms)


class _Dechunker:
    """De-chunks an HTTP body fed piece by piece, handing the data on; the body counts as
    chunked only when it ends with the last chunk, as warcio's ``ChunkedDataReader`` (with
    ``raise_exceptions``) reads it.  Nothing larger than a chunk-size line is buffered."""

    def __init__(self, sink: Callable[[memoryview], object]) -> None:
        self._sink = sink
        self._state = "size"  # size line, chunk data, CRLF after the data, CRLF after size 0
        self._line = b""
        self._left = 0
        self.failed = False
        self.done = False

    def feed(self, data: bytes) -> None:
        """Take the next bytes of the body."""
        view = memoryview(data)
        at = 0
        while at < len(data) and not (self.failed or self.done):
            if self._state == "data":
                take = min(self._left, len(data) - at)
                self._sink(view[at:at + take])
                self._left -= take
                at += take
                if not self._left:
                    self._state = "crlf"
                continue
            if self._state == "size":
                end = data.find(b"\n", at)
                stop = len(data) if end < 0 else end + 1
                self._line += data[at:stop]
                at = stop
                if len(self._line) > _MAX_CHUNK_SIZE_LINE:
                    self.failed = True
                elif end >= 0:
                    self._size_line(self._line)
                    self._line = b""
                continue
            need = 2 - len(self._line)  # the CRLF that ends a chunk, or the whole body
            self._line += data[at:at + need]
            at += need
            if len(self._line) == 2:
                self.failed = self._line != b"\r\n"
                self.done = self._state == "last" and not self.failed
                self._state, self._line = "size", b""

    def _size_line(self, line: bytes) -> None:
        try:
            size = int(line[:-2].split(b";")[0], 16) if line.endswith(b"\r\n") else -1
        except ValueError:
            size = -1
        if not 0 <= size <= 2**31:
            self.failed = True
        elif size:
            self._state, self._left = "data", size
        else:
            self._state = "last"

    @property
    def whole(self) -> bool:
        """Whether the body was a complete chunked body."""
        return self.done and not self.failed


class _BlockReader:
    """Reads a record's block from a stream, hashing it for the digests the record declares."""

    def __init__(self, headers: StatusAndHeaders, stream: LineReadable,
                 length: int, check: bool) -> None:
        self.stream = stream
        self.left = length
        self.unchecked: list[str] = []
        self.block = self._declared("block", headers, check)
        is_revisit = (headers.get_header("WARC-Type") or "") == "revisit"
        # A revisit's payload digest names the payload of the record it revisits.
        self.payload = None if is_revisit else self._declared("payload", headers, check, 2)

    def _declared(self, kind: str, headers: StatusAndHeaders, check: bool,
                  forms: int = 1) -> _Digest | None:
        declared = headers.get_header(f"WARC-{kind.capitalize()}-Digest") if check else None
        if not declared:
            return None
        try:
            return _Digest(kind, declared, forms)
        except UnknownDigestAlgorithm as exc:
            self.unchecked.append(f"{kind} digest not checked: {exc}")
            return None

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of the block; StorageError when the input ends first."""
        return self._took(self.stream.read(min(size, self.left)) if self.left else b"")

    def readline(self) -> bytes:
        """The block's next line (at most ``_MAX_LINE`` bytes)."""
        return self._took(self.stream.readline(min(_MAX_LINE, self.left)) if self.left else b"")

    def _took(self, data: bytes) -> bytes:
        if not data and self.left:
            raise StorageError(f"record block cut short ({self.left} of its bytes missing)")
        self.left -= len(data)
        if self.block is not None:
            self.block.forms[0].update(data)
        return data


def _http_head(block: _BlockReader) -> bytes | None:
    """The HTTP head at the start of a block, up to and with the blank line that ends it
    (CRLF or a bare LF, as warcio and browsers read it); b"" when the block has none, None
    when it is too long to look for."""
    head = bytearray()
    while True:
        if len(head) > _MAX_HEADER_BYTES:
            return None
        line = block.readline()
        if not line:
            return b""
        head += line
        if not line.rstrip() and line.endswith(b"\n"):
            return bytes(head)


def _read_block(headers: StatusAndHeaders, stream: LineReadable, length: int,
                check: bool) -> tuple[bytes, DigestCheck]:
    """Read a block to its end: its start (the HTTP head, if any) and its digests' check."""
    block = _BlockReader(headers, stream, length, check)
    payload = block.payload
    head = b""
    is_http = (headers.get_header("Content-Type") or "").lower().startswith("application/http")
    dechunker: _Dechunker | None = None
    if is_http:
        found = _http_head(block)
        if found is None:
            if payload is not None:
                block.unchecked.append("payload digest not checked: HTTP head over 1 MiB")
            payload = None
        else:
            head = found
        if payload is not None and head:
            try:
                http = _HTTP_PARSER.parse(io.BytesIO(head))
            except (StatusAndHeadersParserException, EOFError, ValueError):
                http = None
            if http is not None and \
                    "chunked" in (http.get_header("Transfer-Encoding") or "").lower():
                dechunker = _Dechunker(payload.forms[1].update)
    else:
        head = block.read(min(length, 1024))
        if payload is not None:
            payload.forms[0].update(head)
    # (An HTTP block without a head was read whole looking for one: its payload is empty.)
    while data := block.read(CHUNK):
        if payload is not None:
            payload.forms[0].update(data)
            if dechunker is not None:
                dechunker.feed(data)
    mismatches = []
    for digest in (block.block, payload):
        if digest is None:
            continue
        forms = [1, 0] if digest is payload and dechunker is not None and dechunker.whole \
            else [0]
        if not digest.matches(forms):
            mismatches.append(f"{digest.kind} digest does not match ({digest.declared})")
    return head, DigestCheck(mismatches, block.unchecked)


# -- reading records ------------------------------------------------------------------------

def read_record(stream: LineReadable, *, check: bool = True) -> ParsedRecord | None:
    """Read one whole record (headers, block, the CRLF CRLF after it); None at end of input.
    With ``check`` the digests it declares are computed; the block is never held whole."""
    first = stream.readline(_MAX_LINE)
    if not first:
        return None
    if not first.startswith(b"WARC/"):
        raise StorageError("not a WARC record (no WARC/ version line)")
    warc_head = bytearray(first)
    while True:
        line = stream.readline(_MAX_LINE)
        if not line:
            raise StorageError("WARC headers cut short")
        warc_head += line
        if line in (b"\r\n", b"\n"):
            break
        if len(warc_head) > _MAX_HEADER_BYTES:
            raise StorageError("WARC headers too long")
    try:
        headers = _WARC_PARSER.parse(io.BytesIO(bytes(warc_head)))
    except (StatusAndHeadersParserException, EOFError, ValueError) as exc:
        raise StorageError(f"unreadable WARC headers: {exc}") from exc
    length_text = (headers.get_header("Content-Length") or "").strip()
    if not length_text.isdigit():
        raise StorageError("WARC record without a valid Content-Length")
    length = int(length_text)
    head, digests = _read_block(headers, stream, length, check)
    if stream.read(4) != RECORD_TRAILER:
        raise StorageError("record block not followed by CRLF CRLF (wrong Content-Length?)")
    return ParsedRecord(headers, head, length, digests)


def scan_warc(path: Path, *, unchecked: frozenset[int] = frozenset(),
              check: bool = True, start: int = 0) -> Iterator[ScannedRecord]:
    """Every record of a WARC file (from byte ``start`` on) with its place; ScanError at the
    first unreadable byte.  The digests of the records at the offsets in ``unchecked`` (of
    every record, without ``check``) are not computed.

    A gzipped file must hold one record per gzip member; an uncompressed file is read record
    by record.
    """
    with open(path, "rb") as handle:
        gzipped = _gzipped(path, handle)
        handle.seek(start)
        if gzipped:
            yield from _scan_gzipped(handle, unchecked, check, start)
            return
        while True:
            start = handle.tell()
            try:
                record = read_record(handle, check=check and start not in unchecked)
            except StorageError as exc:
                raise ScanError(start, str(exc)) from exc
            if record is None:
                return
            yield ScannedRecord(start, handle.tell() - start, record)


def scan_stream(source: Readable) -> Iterator[ScannedRecord]:
    """Every record of a WARC read from a stream (gzipped or not), digests computed, as
    ``scan_warc`` reads a file: garbage is refused within its first bytes, not at the end."""
    reader = LineReader(source)
    if reader.peek(2) == GZIP_MAGIC:
        yield from _scan_gzipped(reader, frozenset(), True)
        return
    while True:
        start = reader.consumed
        try:
            record = read_record(reader)
        except StorageError as exc:
            raise ScanError(start, str(exc)) from exc
        if record is None:
            return
        yield ScannedRecord(start, reader.consumed - start, record)


def resume_point(path: Path, damage: int) -> int | None:
    """Where whole records begin again after unreadable bytes at ``damage`` in a gzipped
    WARC file; None when none follow, or the file is not gzipped (nothing to resync to)."""
    with open(path, "rb") as handle:
        if not _gzipped(path, handle):
            return None
        return next_whole_member(handle, damage)


def _gzipped(path: Path, handle: BinaryIO) -> bool:
    """Whether a WARC file is gzipped: by its first bytes, or by its name when they are
    damaged (a bad sector at its start must not make the rest of it unreadable)."""
    start = handle.read(5)
    return start[:2] == GZIP_MAGIC or (path.name.endswith(".gz") and start != b"WARC/")


def _scan_gzipped(handle: Readable, unchecked: frozenset[int],
                  check: bool, first: int = 0) -> Iterator[ScannedRecord]:
    for start, member in iter_gzip_members(handle, first):
        try:
            record = read_record(member.stream, check=check and start not in unchecked)
            more = member.stream.read(1)
        except ScanError:
            raise
        except StorageError as exc:
            raise ScanError(start, str(exc)) from exc
        if record is None:
            continue  # an empty member holds nothing to read
        if more:
            raise ScanError(start, "gzip member holds more than one record "
                                   "(the file is not gzipped record by record)")
        yield ScannedRecord(start, member.finish(), record)


@contextmanager
def _reading() -> Iterator[None]:
    """Turn a gzip member's ScanError into the plain error of a single record's bytes."""
    try:
        yield
    except ScanError as exc:
        if "partial tail" in exc.reason:
            raise StorageError("the bytes end inside a gzip member (length too short)") from exc
        raise StorageError(exc.reason) from exc


def read_exact(source: Readable, gzipped: bool, *, check: bool = True) -> \
        tuple[ParsedRecord, int]:
    """The one record at the start of ``source`` (a record's bytes as its index row places
    them) and the bytes it took, refusing anything more or less than one whole record.  With
    ``check`` the digests it declares are computed."""
    if not gzipped:
        reader = LineReader(source)
        record = read_record(reader, check=check)
        if record is None:
            raise StorageError("no WARC record at that location")
        return record, reader.consumed
    start = source.read(2)
    if start != GZIP_MAGIC:
        raise StorageError("the bytes do not start a gzip member")
    member = GzipMember(source, start)
    with _reading():
        record = read_record(member.stream, check=check)
        more = member.stream.read(1)
        length = member.finish()
    if record is None:
        raise StorageError("no WARC record at that location")
    if more:
        raise StorageError("more than one record at that location (length too long)")
    if member.rest or source.read(1):
        raise StorageError("the bytes run past the end of the gzip member (length too long)")
    return record, length
