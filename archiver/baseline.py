"""A link's first fingerprint made again, the current way, from its first capture's record.

When the way sketches are made changes (``archiver/fingerprint.py``), a link's stored first
fingerprint can no longer be compared with new sketches, and its drift would be lost.  The page
it was made from is in the WARC files: the capture that finds an old first fingerprint reads
the link's first capture that reached a page (its redirects followed, a revisit read from the
response it repeats) and sketches it again, as the capture sketched it then.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from archiver.errors import StorageError
from archiver.fingerprint import body_sketch
from archiver.models import Capture
from archiver.replay.lookup import (
    captures_of,
    nearest_capture,
    original_response,
    redirect_target,
)
from archiver.warc.store import WarcStore, open_record

log = logging.getLogger(__name__)

FIRST_CAPTURES = 10  # the earliest captures looked at for one that reached a page
MAX_HOPS = 10  # redirects followed from a capture


def first_page_sketch(session: Session, store: WarcStore, url: str, limit: int) -> str | None:
    """The current sketch of the page ``url``'s earliest capture reached (None when no capture
    reached one, or its record cannot be read)."""
    for capture in captures_of(session, url)[:FIRST_CAPTURES]:
        page = _page_reached(session, store, capture)
        if page is None:
            continue
        try:
            record = open_record(store.read_record_bytes(page.warc_file, page.offset,
                                                         page.length))
            headers = record.http_headers
            body = record.raw_stream.read(limit + 1)
        except (StorageError, OSError, ValueError) as exc:
            log.warning("the first capture of %s cannot be read to sketch it again: %s",
                        url, exc)
            return None
        header = headers.get_header if headers is not None else (lambda _name: None)
        return body_sketch(body[:limit], header("Content-Type") or "",
                           header("Content-Encoding") or "", limit)
    return None


def _page_reached(session: Session, store: WarcStore, capture: Capture) -> Capture | None:
    """The response record of the 2xx page ``capture`` leads to, or None."""
    current: Capture | None = capture
    for _ in range(MAX_HOPS + 1):
        if current is None or current.status is None:
            return None
        if 200 <= current.status < 300:
            return original_response(session, current)
        if not 300 <= current.status < 400:
            return None
        target = redirect_target(store, current)
        current = nearest_capture(session, target, current.captured_at) if target else None
    return None
