"""Check the archive against itself: every index row against the bytes it points at, and every
WARC file from its first byte to its last.

For each capture row the bytes at (offset, length) must be exactly one whole gzip member (or,
in an uncompressed file, exactly one record) whose WARC-Record-ID, WARC-Target-URI, WARC-Type
and WARC-Payload-Digest are the row's, and whose block and payload digests verify.  The
payload of an HTTP response is the entity body after the HTTP headers.  When the body is
chunked, tools disagree on whether the digest covers the chunked or the de-chunked bytes
(warcio and wget digest what is stored, the chunked form), so either is accepted.

The record reader here (``read_record``, ``iter_gzip_members``, ``scan_warc``) and the digest
check (``check_digests``) are also what the importer uses to refuse WARC files it could not
index record by record or whose records do not have the digests they declare.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select
from warcio.bufferedreaders import ChunkedDataException, ChunkedDataReader
from warcio.statusandheaders import (
    StatusAndHeaders,
    StatusAndHeadersParser,
    StatusAndHeadersParserException,
)

from archiver.archive import Archive
from archiver.errors import StorageError
from archiver.models import Capture
from archiver.warc.store import WarcStore

log = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
RECORD_TRAILER = b"\r\n\r\n"
_CHUNK = 1 << 16
_MAX_LINE = 1 << 16
_MAX_HEADER_BYTES = 1 << 20
MAX_MEMBER_BYTES = 1 << 31  # a record bigger than this is not read into memory
_WARC_PARSER = StatusAndHeadersParser(["WARC/1.1", "WARC/1.0", "WARC/0.18", "WARC/0.17"])
_HTTP_PARSER = StatusAndHeadersParser([], verify=False)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the archive: the file, the byte offset, and what is wrong."""

    warc_file: str
    offset: int
    message: str

    def line(self) -> str:
        """One line for people and scripts: ``file@offset: message``."""
        return f"{self.warc_file}@{self.offset}: {self.message}"


class ScanError(StorageError):
    """A WARC file cannot be read past ``offset``."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(f"{message} (at byte {offset})")
        self.offset = offset
        self.reason = message


@dataclass(frozen=True)
class ParsedRecord:
    """One WARC record read in full: its WARC headers and its block."""

    headers: StatusAndHeaders
    block: bytes

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
        """WARC-Target-URI without the angle brackets some WARC/1.0 writers (wget) add."""
        return strip_brackets(self.header("WARC-Target-URI") or "")


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


# -- reading records -----------------------------------------------------------------------

def read_record(stream: BinaryIO) -> ParsedRecord | None:
    """Read one whole record (headers, block, the CRLF CRLF after it); None at end of input."""
    first = stream.readline(_MAX_LINE)
    if not first:
        return None
    if not first.startswith(b"WARC/"):
        raise StorageError("not a WARC record (no WARC/ version line)")
    head = bytearray(first)
    while True:
        line = stream.readline(_MAX_LINE)
        if not line:
            raise StorageError("WARC headers cut short")
        head += line
        if line in (b"\r\n", b"\n"):
            break
        if len(head) > _MAX_HEADER_BYTES:
            raise StorageError("WARC headers too long")
    try:
        headers = _WARC_PARSER.parse(io.BytesIO(bytes(head)))
    except (StatusAndHeadersParserException, EOFError, ValueError) as exc:
        raise StorageError(f"unreadable WARC headers: {exc}") from exc
    length_text = (headers.get_header("Content-Length") or "").strip()
    if not length_text.isdigit():
        raise StorageError("WARC record without a valid Content-Length")
    length = int(length_text)
    if length > MAX_MEMBER_BYTES:
        raise StorageError(f"record block of {length} bytes is too large to check")
    block = stream.read(length)
    if len(block) < length:
        raise StorageError(f"record block cut short ({len(block)} of {length} bytes)")
    if stream.read(4) != RECORD_TRAILER:
        raise StorageError("record block not followed by CRLF CRLF (wrong Content-Length?)")
    return ParsedRecord(headers, block)


def _inflate(data: bytes) -> tuple[bytes, bool, bytes]:
    """Decompress one gzip member: (output, whether the member ended, bytes after it)."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        output = inflater.decompress(data, MAX_MEMBER_BYTES)
    except zlib.error as exc:
        raise StorageError(f"corrupt gzip data: {exc}") from exc
    if inflater.unconsumed_tail:
        raise StorageError("gzip member is too large to check")
    return output, inflater.eof, inflater.unused_data


def iter_gzip_members(handle: BinaryIO) -> Iterator[tuple[int, int, bytes]]:
    """(offset, compressed length, decompressed bytes) of each gzip member of a file."""
    offset = 0
    pending = b""
    while True:
        if not pending:
            pending = handle.read(_CHUNK)
            if not pending:
                return
        start, consumed = offset, 0
        inflater = zlib.decompressobj(wbits=31)
        output = bytearray()
        while not inflater.eof:
            if not pending:
                pending = handle.read(_CHUNK)
                if not pending:
                    raise ScanError(start, "file ends inside a gzip member (partial tail)")
            try:
                output += inflater.decompress(pending)
            except zlib.error as exc:
                raise ScanError(start, f"corrupt gzip data: {exc}") from exc
            if len(output) > MAX_MEMBER_BYTES:
                raise ScanError(start, "gzip member is too large to check")
            consumed += len(pending) - len(inflater.unused_data)
            pending = inflater.unused_data
        offset = start + consumed
        yield start, consumed, bytes(output)


def scan_warc(path: Path) -> Iterator[ScannedRecord]:
    """Every record of a WARC file with its place; ScanError at the first unreadable byte.

    A gzipped file must hold one record per gzip member (the WARC standard's recommendation,
    and what makes a record addressable by offset); an uncompressed file is read record by
    record.
    """
    with open(path, "rb") as handle:
        gzipped = handle.read(2) == GZIP_MAGIC
        handle.seek(0)
        if gzipped:
            for start, length, data in iter_gzip_members(handle):
                stream = io.BytesIO(data)
                try:
                    record = read_record(stream)
                except StorageError as exc:
                    raise ScanError(start, str(exc)) from exc
                if record is None:
                    continue  # an empty member holds nothing to read
                if stream.read(1):
                    raise ScanError(start, "gzip member holds more than one record "
                                           "(the file is not gzipped record by record)")
                yield ScannedRecord(start, length, record)
            return
        while True:
            start = handle.tell()
            try:
                record = read_record(handle)
            except StorageError as exc:
                raise ScanError(start, str(exc)) from exc
            if record is None:
                return
            yield ScannedRecord(start, handle.tell() - start, record)


def parse_exact(data: bytes, gzipped: bool) -> ParsedRecord:
    """The one record ``data`` holds, refusing anything more or less than one whole record."""
    if gzipped:
        if not data.startswith(GZIP_MAGIC):
            raise StorageError("the bytes do not start a gzip member")
        data, ended, rest = _inflate(data)
        if not ended:
            raise StorageError("the bytes end inside a gzip member (length too short)")
        if rest:
            raise StorageError("the bytes run past the end of the gzip member (length too long)")
    stream = io.BytesIO(data)
    record = read_record(stream)
    if record is None:
        raise StorageError("no WARC record at that location")
    if stream.read(1):
        raise StorageError("more than one record at that location (length too long)")
    return record


# -- digests --------------------------------------------------------------------------------

class UnknownDigestAlgorithm(StorageError):
    """A declared digest whose algorithm this Python cannot compute."""


@dataclass(frozen=True)
class DigestCheck:
    """What checking a record's declared block and payload digests found."""

    mismatches: list[str]  # declared digests that the bytes do not have
    unchecked: list[str]  # declared digests in an algorithm that cannot be computed here


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


def digest_matches(declared: str, candidates: list[bytes | memoryview]) -> bool:
    """Whether ``algorithm:value`` (base32, hex or base64 value) is the digest of a candidate."""
    algorithm, _, value = declared.strip().partition(":")
    name = _hash_name(algorithm)
    value = value.strip()
    for data in candidates:
        raw = hashlib.new(name, data).digest()
        forms = {base64.b32encode(raw).decode().rstrip("="), raw.hex().upper()}
        if value.upper().rstrip("=") in forms:
            return True
        try:
            if base64.b64decode(value, validate=True) == raw:
                return True
        except (binascii.Error, ValueError):
            pass
    return False


def payload_candidates(record: ParsedRecord) -> list[bytes | memoryview]:
    """The payload of a record, in each form a payload digest may have been computed over."""
    content_type = (record.header("Content-Type") or "").lower()
    if not content_type.startswith("application/http"):
        return [record.block]
    end = record.block.find(b"\r\n\r\n")
    if end < 0:
        return [b""]
    body = memoryview(record.block)[end + 4:]  # a view: a large payload is not copied to hash
    try:
        http = _HTTP_PARSER.parse(io.BytesIO(record.block[:end + 4]))
    except (StatusAndHeadersParserException, EOFError, ValueError):
        return [body]
    if "chunked" not in (http.get_header("Transfer-Encoding") or "").lower():
        return [body]
    try:
        dechunked = ChunkedDataReader(io.BytesIO(body), raise_exceptions=True).read()
    except ChunkedDataException:
        return [body]
    return [dechunked, body]


def check_digests(record: ParsedRecord) -> DigestCheck:
    """Check a record's WARC-Block-Digest and WARC-Payload-Digest, when it declares them.

    A revisit's payload digest names the payload of the record it revisits, so only its block
    digest is checked.
    """
    mismatches: list[str] = []
    unchecked: list[str] = []
    declared = {"block": record.header("WARC-Block-Digest")}
    if record.rec_type != "revisit":
        declared["payload"] = record.header("WARC-Payload-Digest")
    for kind, digest in declared.items():
        if not digest:
            continue
        candidates: list[bytes | memoryview] = \
            [record.block] if kind == "block" else payload_candidates(record)
        try:
            if not digest_matches(digest, candidates):
                mismatches.append(f"{kind} digest does not match ({digest})")
        except UnknownDigestAlgorithm as exc:
            unchecked.append(f"{kind} digest not checked: {exc}")
    return DigestCheck(mismatches, unchecked)


def digest_problems(record: ParsedRecord) -> list[str]:
    """What is wrong with a record's block and payload digests (nothing when they verify).
    A digest in an algorithm that cannot be computed is not a problem, as at import: it is
    logged as not checked."""
    check = check_digests(record)
    for note in check.unchecked:
        log.warning("%s (%s)", note, record.header("WARC-Target-URI") or record.rec_type)
    return check.mismatches


# -- verifying the archive -----------------------------------------------------------------

def record_bytes(store: WarcStore, capture: Capture) -> bytes:
    """The whole record a capture row points at: its gzip member, or in an uncompressed file
    the record with its CRLF CRLF trailer (which warcio's record lengths leave out)."""
    data = store.read_record_bytes(capture.warc_file, capture.offset, capture.length)
    if capture.warc_file.endswith(".gz"):
        return data
    size = store.file_size(capture.warc_file) or 0
    extra = max(0, min(len(RECORD_TRAILER), size - capture.offset - capture.length))
    data += store.read_record_bytes(capture.warc_file, capture.offset + capture.length, extra)
    stream = io.BytesIO(data)
    try:
        read_record(stream)
    except StorageError:
        return data[:capture.length]  # let the caller report what is wrong with it
    if stream.tell() not in (capture.length, capture.length + len(RECORD_TRAILER)):
        return data[:capture.length]
    return data[:stream.tell()]


def check_capture(store: WarcStore, capture: Capture) -> list[str]:
    """What is wrong with one index row and the record it points at."""
    try:
        size = store.file_size(capture.warc_file)
    except StorageError as exc:
        return [str(exc)]
    if size is None:
        return ["WARC file is missing"]
    if capture.offset < 0 or capture.length <= 0 or capture.offset + capture.length > size:
        return [f"record ({capture.length} bytes) runs past the end of the file ({size} bytes)"]
    try:
        record = parse_exact(record_bytes(store, capture), capture.warc_file.endswith(".gz"))
    except StorageError as exc:
        return [str(exc)]
    problems = []
    expected = {
        "WARC-Record-ID": (record.header("WARC-Record-ID"), capture.record_id),
        "WARC-Target-URI": (record.target_uri, capture.url),
        "WARC-Type": (record.rec_type, capture.record_type),
        "WARC-Payload-Digest": (record.header("WARC-Payload-Digest"), capture.payload_digest),
    }
    for name, (found, indexed) in expected.items():
        if (found or None) != (indexed or None):
            problems.append(f"{name} is {found!r} but the index says {indexed!r}")
    return problems + digest_problems(record)


def check_file(store: WarcStore, name: str, indexed: set[int]) -> list[Problem]:
    """Problems of one WARC file read end to end: unreadable bytes, a partial tail, and bad
    digests of the records no index row points at (indexed ones are checked row by row)."""
    problems: list[Problem] = []
    try:
        with store.local_copy(name) as path:
            for scanned in scan_warc(path):
                if scanned.offset not in indexed:
                    problems += [Problem(name, scanned.offset,
                                         f"{scanned.record.rec_type} record: {message}")
                                 for message in digest_problems(scanned.record)]
    except ScanError as exc:
        problems.append(Problem(name, exc.offset, f"unreadable from here on: {exc.reason}"))
    except (OSError, StorageError) as exc:
        problems.append(Problem(name, 0, f"cannot read the file: {exc}"))
    return problems


def verify(archive: Archive) -> list[Problem]:
    """Every problem found in the capture index and the WARC files, by file and offset."""
    problems: list[Problem] = []
    indexed: dict[str, set[int]] = {}
    with archive.db.session() as session:
        rows = session.scalars(select(Capture).order_by(Capture.warc_file, Capture.offset))
        for capture in rows:
            indexed.setdefault(capture.warc_file, set()).add(capture.offset)
            problems += [Problem(capture.warc_file, capture.offset,
                                 f"capture #{capture.id} ({capture.url}): {message}")
                         for message in check_capture(archive.store, capture)]
    for name in archive.store.files():
        problems += check_file(archive.store, name, indexed.get(name, set()))
    return sorted(problems, key=lambda p: (p.warc_file, p.offset))
