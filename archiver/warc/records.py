"""WARC records: what the index knows about one (written or read back), and their framing."""

from __future__ import annotations

import base64
import hashlib
import struct
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime

from warcio.statusandheaders import StatusAndHeaders

from archiver.clock import parse_warc_date
from archiver.errors import StorageError
from archiver.urls import url_key
from archiver.warc.reader import ParsedRecord

INDEXED_TYPES = frozenset({"response", "revisit", "resource"})


@dataclass(frozen=True)
class RecordLocation:
    """A record's place on disk and the facts the capture index keeps about it."""

    warc_file: str
    offset: int
    length: int
    record_type: str
    record_id: str
    url: str
    captured_at: datetime
    status: int | None
    mime: str | None
    payload_digest: str | None
    truncated: str | None

    @property
    def url_key(self) -> str:
        """SURT key of the record's target URI."""
        return url_key(self.url)


class RecordError(StorageError):
    """A record the index cannot keep: no valid WARC-Date, a segmented record, an HTTP status
    that is not one."""


def _captured_at(headers: StatusAndHeaders) -> datetime:
    text = (headers.get_header("WARC-Date") or "").strip()
    if not text:
        raise RecordError("record without a WARC-Date")
    try:
        return parse_warc_date(text)
    except (ValueError, OverflowError) as exc:
        raise RecordError(f"WARC-Date {text[:40]!r} is not a date") from exc


def status_code(code: str | None) -> int | None:
    """An HTTP status code as warcio reads it from a status line; None when there is none
    (no digits), RecordError when its digits are not three."""
    if not code or not (code.isascii() and code.isdigit()):
        return None
    if len(code) != 3:
        raise RecordError(f"HTTP status {code[:20]!r} is not a three-digit code")
    return int(code)


def _mime(content_type: str | None) -> str | None:
    return content_type.split(";", 1)[0].strip().lower() if content_type else None


def location_from_record(record: ParsedRecord, warc_file: str, offset: int,
                         length: int) -> RecordLocation | None:
    """Index facts of a record, or None for records the index does not keep (other types,
    no WARC-Target-URI).  The one rule that import and reindex share; RecordError for a
    record that cannot be indexed.  Segmented records are refused: joining the segments of
    a record (WARC-Segment-Number, ``continuation`` records) is not supported."""
    headers = record.headers
    rec_type = record.rec_type
    if rec_type == "continuation" or headers.get_header("WARC-Segment-Number"):
        raise RecordError("segmented record (WARC-Segment-Number or continuation): joining "
                          "segments is not supported")
    url = record.target_uri
    if rec_type not in INDEXED_TYPES or not url:
        return None
    status: int | None = None
    mime: str | None = None
    if rec_type == "resource":
        status = 200
        mime = _mime(headers.get_header("Content-Type"))
    else:
        http_headers = record.http_headers()
        if http_headers is not None:
            status = status_code(http_headers.get_statuscode())
            mime = _mime(http_headers.get_header("Content-Type"))
    return RecordLocation(
        warc_file=warc_file, offset=offset, length=length, record_type=rec_type,
        record_id=headers.get_header("WARC-Record-ID") or "", url=url,
        captured_at=_captured_at(headers), status=status, mime=mime,
        payload_digest=headers.get_header("WARC-Payload-Digest"),
        truncated=headers.get_header("WARC-Truncated"),
    )


# -- writing ---------------------------------------------------------------------------------
# Records are framed here rather than by warcio's writer, which costs several times more per
# record: WARC/1.1 headers, CRLF line ends, ``Content-Length`` of the block, the block, then
# CRLF CRLF; each record is its own gzip member, so it can be read back by (offset, length).
# A body that does not compress is kept in stored blocks: deflating random-looking bytes costs
# time and saves nothing.

WARC_VERSION = "WARC/1.1"
REVISIT_PROFILE = "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest"
RESPONSE_TYPE = "application/http; msgtype=response"
REQUEST_TYPE = "application/http; msgtype=request"
GZIP_LEVEL = 6
_PROBE_BYTES = 2048  # sampled from a body to see whether deflating it is worth the time
_INCOMPRESSIBLE = 0.97  # a probe that shrinks less than this is not worth deflating
_RECORD_END = b"\r\n\r\n"
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"  # deflate, no name, no time, Unix
_STORED_BLOCK = 65_535


def record_id() -> str:
    """A new ``WARC-Record-ID``."""
    return f"<urn:uuid:{uuid.uuid4()}>"


def sha1_digest(*parts: bytes) -> str:
    """``sha1:`` and base32 of the concatenated parts, as WARC digests are written."""
    if not any(parts):
        return _EMPTY_DIGEST  # every GET request record's payload
    hasher = hashlib.sha1()  # noqa: S324 - the WARC digest algorithm, not a security use
    for part in parts:
        hasher.update(part)
    return "sha1:" + base64.b32encode(hasher.digest()).decode("ascii")


_EMPTY_DIGEST = "sha1:" + base64.b32encode(hashlib.sha1(b"").digest()).decode("ascii")  # noqa: S324


def http_head(protocol: str, status_line: str, headers: list[tuple[str, str]]) -> bytes:
    """An HTTP status line and headers, ending with the blank line, as their bytes came.

    The client reads a head as Latin-1 (as http.client does), so encoding it as Latin-1 gives
    back the bytes received: a raw UTF-8 ``Location`` stays the address it names, where
    percent-encoding the Latin-1 reading (warcio's writer) stored another one. A line that
    cannot have come so (beyond Latin-1) is written as UTF-8, which readers try first.
    """
    first = " ".join(part for part in (protocol, status_line) if part)
    lines = [first, *(f"{k}: {v}" for k, v in headers), "", ""]
    try:
        return "\r\n".join(lines).encode("latin-1")
    except UnicodeEncodeError:
        return b"\r\n".join(_latin1_or_utf8(line) for line in lines)


def _latin1_or_utf8(line: str) -> bytes:
    try:
        return line.encode("latin-1")
    except UnicodeEncodeError:
        return line.encode("utf-8")


def _incompressible(body: bytes) -> bool:
    """Whether a sample from the middle of ``body`` barely shrinks (JPEG, WOFF2, video)."""
    if len(body) <= 4 * _PROBE_BYTES:
        return False
    middle = len(body) // 2
    probe = body[middle:middle + _PROBE_BYTES]
    return len(zlib.compress(probe, 1)) >= _INCOMPRESSIBLE * len(probe)


def _stored_member(parts: list[bytes]) -> bytes:
    """A gzip member holding ``parts`` (not empty) in stored deflate blocks (RFC 1951 3.2.4).

    zlib's level 0 still runs its compressor over the data; this only copies it.
    """
    data = b"".join(parts)
    blocks = [_GZIP_HEADER]
    for start in range(0, len(data), _STORED_BLOCK):
        chunk = data[start:start + _STORED_BLOCK]
        final = int(start + _STORED_BLOCK >= len(data))
        blocks += [struct.pack("<BHH", final, len(chunk), len(chunk) ^ 0xFFFF), chunk]
    blocks.append(struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF))
    return b"".join(blocks)


def record_member(headers: list[tuple[str, str]], head: bytes, body: bytes = b"") -> bytes:
    """One WARC record (its headers, then ``head`` + ``body`` as the block) as a gzip member.

    ``Content-Length`` is added here; every other header, digests included, is the caller's.
    """
    lines = [WARC_VERSION, *(f"{name}: {value}" for name, value in headers),
             f"Content-Length: {len(head) + len(body)}", "", ""]
    parts = ["\r\n".join(lines).encode("utf-8"), head, body, _RECORD_END]
    if _incompressible(body):
        return _stored_member(parts)
    packer = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, zlib.MAX_WBITS + 16)
    return b"".join([*map(packer.compress, parts), packer.flush()])
