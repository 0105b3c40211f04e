"""What the index knows about one WARC record, whether just written or read back from a file."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from archiver.clock import parse_warc_date
from archiver.urls import url_key

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


def location_from_record(record: object, warc_file: str, offset: int,
                         length: int) -> RecordLocation | None:
    """Index facts of a warcio record, or None for records the index does not keep."""
    rec_type: str = record.rec_type  # type: ignore[attr-defined]
    if rec_type not in INDEXED_TYPES:
        return None
    headers = record.rec_headers  # type: ignore[attr-defined]
    http_headers = record.http_headers  # type: ignore[attr-defined]
    status: int | None = None
    mime: str | None = None
    if http_headers is not None and rec_type in {"response", "revisit"}:
        code = http_headers.get_statuscode()
        status = int(code) if code and code.isdigit() else None
        content_type = http_headers.get_header("Content-Type")
        mime = content_type.split(";", 1)[0].strip().lower() if content_type else None
    elif rec_type == "resource":
        status = 200
        content_type = headers.get_header("Content-Type")
        mime = content_type.split(";", 1)[0].strip().lower() if content_type else None
    return RecordLocation(
        warc_file=warc_file, offset=offset, length=length, record_type=rec_type,
        record_id=headers.get_header("WARC-Record-ID") or "",
        url=headers.get_header("WARC-Target-URI") or "",
        captured_at=parse_warc_date(headers.get_header("WARC-Date")),
        status=status, mime=mime,
        payload_digest=headers.get_header("WARC-Payload-Digest"),
        truncated=headers.get_header("WARC-Truncated"),
    )
