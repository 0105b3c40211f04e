"""Snapshot one URL into the WARC store and index what was written."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver.fingerprint import body_sketch
from archiver.models import Capture
from archiver.net.client import FetchError, HttpClient
from archiver.warc.records import RecordLocation
from archiver.warc.store import WarcStore


@dataclass
class CaptureResult:
    """Records written for one URL (every redirect hop included) and the error, if any."""

    locations: list[RecordLocation] = field(default_factory=list)
    error: str | None = None
    verdict: str | None = None
    sketch: str | None = None  # text fingerprint of the final response, when it succeeded

    @property
    def ok(self) -> bool:
        """True when at least one response was archived."""
        return bool(self.locations)


def capture_url(client: HttpClient, store: WarcStore, url: str) -> CaptureResult:
    """Fetch ``url`` with its redirects and write each exchange; never raises on fetch errors."""
    try:
        exchanges = client.fetch(url).exchanges
        error: FetchError | None = None
    except FetchError as exc:
        exchanges, error = exc.exchanges, exc
    result = CaptureResult(locations=[store.write_exchange(e) for e in exchanges])
    final = exchanges[-1] if exchanges else None
    if final is not None and 200 <= final.status < 300 and error is None:
        result.sketch = body_sketch(final.body, final.header("Content-Type") or "",
                                    final.header("Content-Encoding") or "",
                                    client.max_body_bytes)
    if error is not None:
        result.error, result.verdict = error.message, error.verdict
    return result


def index_locations(session: Session, locations: list[RecordLocation]) -> int:
    """Add index rows for records on disk; rows already present are left alone."""
    added = 0
    for location in locations:
        exists = session.scalar(select(Capture.id).where(
            Capture.warc_file == location.warc_file, Capture.offset == location.offset))
        if exists is not None:
            continue
        session.add(Capture(
            url=location.url, url_key=location.url_key, captured_at=location.captured_at,
            record_type=location.record_type, status=location.status, mime=location.mime,
            payload_digest=location.payload_digest, warc_file=location.warc_file,
            offset=location.offset, length=location.length, record_id=location.record_id,
            truncated=location.truncated))
        added += 1
    return added
