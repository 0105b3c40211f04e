"""A link's first fingerprint made again, the current way, from its first capture's record.

When the way sketches are made changes (``archiver/fingerprint.py``), a link's stored first
fingerprint can no longer be compared with new sketches, and its drift would be lost.  The page
it was made from is in the WARC files: the capture that finds an old first fingerprint reads
the link's earliest capture that reached a page (its redirects followed, a revisit read from
the response it repeats) and sketches it again, as the capture sketched it then.

Only captures made before the one in hand count, and a first page that cannot be known for
sure (a record lost, damaged or unreadable, a redirect hop missing) leaves the old fingerprint
and its drift as they are: a wrong baseline would report a rewritten page as unchanged.  Nothing
here can make the capture that asks fail.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver.db import Database
from archiver.fingerprint import body_sketch
from archiver.models import Capture
from archiver.replay.lookup import original_response, redirect_target
from archiver.urls import url_key
from archiver.warc.store import WarcStore, open_record

log = logging.getLogger(__name__)

FIRST_CAPTURES = 10  # the earliest answered captures looked at for one that reached a page
MAX_HOPS = 10  # redirects followed from a capture
HOP_WINDOW = timedelta(minutes=15)  # a redirect's next hop was captured within this
HOP_SLACK = timedelta(seconds=5)  # and not before it, but for the clock's grain


class _Unknown(Exception):
    """The first page cannot be known for sure from what the archive holds."""


def first_page_sketch(db: Database, store: WarcStore, url: str, before: datetime,
                      limit: int) -> str | None:
    """The current sketch of the page ``url``'s earliest capture before ``before`` reached;
    None when no capture reached one or it cannot be known for sure."""
    try:
        with db.session() as session:
            for capture in session.scalars(
                    select(Capture).where(Capture.url_key == url_key(url),
                                          Capture.captured_at < before,
                                          Capture.status.between(200, 399))
                    .order_by(Capture.captured_at, Capture.id).limit(FIRST_CAPTURES)):
                page = _page_reached(session, store, capture, before)
                if page is not None:
                    return _sketch(store, page, limit)
    except _Unknown as why:
        log.warning("the first page of %s cannot be sketched again (%s): its old fingerprint "
                    "and drift are kept", url, why)
    except Exception:  # a damaged record, a storage error: never the capture's failure
        log.warning("the first capture of %s cannot be read to sketch it again", url,
                    exc_info=True)
    return None


def _page_reached(session: Session, store: WarcStore, capture: Capture,
                  before: datetime) -> Capture | None:
    """The response record of the 2xx page ``capture`` led to; None when it led to no page
    (a redirect to a 404); _Unknown when a hop cannot be followed."""
    current = capture
    for _ in range(MAX_HOPS + 1):
        status = current.status or 0
        if 200 <= status < 300:
            original = original_response(session, current)
            if original is None:
                raise _Unknown(f"the response revisit {current.record_id} repeats is missing")
            return original
        if not 300 <= status < 400:
            return None
        target = redirect_target(store, current)
        if target is None:
            raise _Unknown(f"where {current.url} redirected cannot be read")
        hop = session.scalars(
            select(Capture).where(Capture.url_key == url_key(target),
                                  Capture.captured_at >= current.captured_at - HOP_SLACK,
                                  Capture.captured_at < min(before,
                                                            current.captured_at + HOP_WINDOW))
            .order_by(Capture.captured_at, Capture.id).limit(1)).first()
        if hop is None:
            raise _Unknown(f"the capture of {target} that {current.url} redirected to is missing")
        current = hop
    return None


def _sketch(store: WarcStore, page: Capture, limit: int) -> str | None:
    """The page's body sketched as the capture sketched it: as received, with its
    Content-Type and Content-Encoding."""
    record = open_record(store.read_record_bytes(page.warc_file, page.offset, page.length))
    headers = record.http_headers
    body = record.raw_stream.read(limit)

    def header(name: str) -> str:
        return (headers.get_header(name) if headers is not None else None) or ""

    return body_sketch(body, header("Content-Type"), header("Content-Encoding"), limit)
