"""Finding captures in the index: nearest to a time, latest good one, the response a revisit
repeats, where a redirect leads, and replay paths."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.orm import Session

from archiver.clock import warc_timestamp
from archiver.errors import StorageError
from archiver.models import Capture
from archiver.urls import MAX_URL_LENGTH, resolve, url_key
from archiver.warc.store import WarcStore, open_record

REPLAY_PREFIX = "/web/"
REPLAYABLE_TYPES = ("response", "revisit", "resource")


def replay_path(captured_at: datetime, url: str, modifier: str = "") -> str:
    """Wayback-style replay path: ``/web/<14-digit timestamp><modifier>/<url>``."""
    return f"{REPLAY_PREFIX}{warc_timestamp(captured_at)}{modifier}/{url}"


def parse_timestamp(text: str) -> datetime:
    """A 1-14 digit Wayback timestamp, padded to the middle of what it leaves open."""
    if not text.isdigit() or not 1 <= len(text) <= 14:
        raise ValueError(f"not a timestamp: {text!r}")
    # Pad with the earliest valid value of each missing field (year 2000 when no year).
    padded = (text + "00000101000000"[len(text):]) if len(text) >= 4 else \
        (text + "2000"[len(text):] + "0101000000")
    padded = padded[:14]
    month = min(max(int(padded[4:6]), 1), 12)
    day = min(max(int(padded[6:8]), 1), 28 if month == 2 else 30)
    return datetime(int(padded[0:4]), month, day, min(int(padded[8:10]), 23),
                    min(int(padded[10:12]), 59), min(int(padded[12:14]), 59))


# Query parameters that never change what a page is: analytics tags and cache busters.
_TRACKING = re.compile(r"^(?:utm_\w+|fbclid|gclid|dclid|msclkid|yclid|igshid|mc_cid|mc_eid|_ga|_gl"
                       r"|_hsenc|_hsmi|ref_src|mkt_tok|oly_anon_id|oly_enc_id|vero_id)$", re.I)
_CACHE_BUSTERS = re.compile(r"^(?:_|cb|bust|cachebust(?:er)?|nocache|rand(?:om)?|t|ts"
                            r"|timestamp)$", re.I)
_BUSTER_VALUE = re.compile(r"^[0-9a-f.]{6,}$", re.I)
FUZZY_CANDIDATES = 500


def fuzzy_url(url: str) -> str:
    """``url`` without tracking parameters and numeric cache busters (``?_=1700000000``)."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    kept = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True)
            if not _TRACKING.match(key)
            and not (_CACHE_BUSTERS.match(key) and _BUSTER_VALUE.match(value))]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(kept), ""))


def _replayable(key: str) -> Select[Any]:
    return select(Capture).where(Capture.url_key == key,
                                 Capture.record_type.in_(REPLAYABLE_TYPES))


def resolve_key(session: Session, url: str) -> str | None:
    """The index key holding ``url``'s captures: its own, or a fuzzy match's (none is looked
    for when the address is longer than any link taken)."""
    key = url_key(url)
    if session.scalar(_replayable(key).limit(1)) is not None:
        return key
    wanted = url_key(fuzzy_url(url))
    if wanted != key and session.scalar(_replayable(wanted).limit(1)) is not None:
        return wanted
    path_key = wanted.split("?", 1)[0]
    if len(path_key) > MAX_URL_LENGTH:  # SQLite refuses a LIKE pattern over 50,000 bytes,
        return None  # and no link that long is ever taken (imported ones still match exactly)
    rows = session.execute(
        select(Capture.url_key, Capture.url).where(
            Capture.url_key.startswith(path_key, autoescape=True),
            Capture.record_type.in_(REPLAYABLE_TYPES))
        .distinct().limit(FUZZY_CANDIDATES)).all()
    for candidate_key, candidate_url in rows:
        if url_key(fuzzy_url(candidate_url)) == wanted:
            return str(candidate_key)
    return None


# Built once: every replay request runs it, and building the statement costs as much as the
# query itself on SQLite.
_CAPTURES_BY_KEY = (select(Capture)
                    .where(Capture.url_key == bindparam("key"),
                           Capture.record_type.in_(REPLAYABLE_TYPES))
                    .order_by(Capture.captured_at, Capture.id))


def captures_of(session: Session, url: str) -> list[Capture]:
    """Every replayable capture of ``url`` (fuzzy matched if need be), oldest first."""
    exact = list(session.scalars(_CAPTURES_BY_KEY, {"key": url_key(url)}))
    if exact:
        return exact  # the usual case: one query
    key = resolve_key(session, url)
    if key is None:
        return []
    return list(session.scalars(_CAPTURES_BY_KEY, {"key": key}))


def nearest_capture(session: Session, url: str, moment: datetime | None) -> Capture | None:
    """The capture of ``url`` closest in time to ``moment`` (the latest when None)."""
    key = resolve_key(session, url)
    if key is None:
        return None
    base = _replayable(key)
    latest: Capture | None = session.scalars(
        base.order_by(Capture.captured_at.desc()).limit(1)).first()
    if moment is None or latest is None:
        return latest
    before = session.scalars(base.where(Capture.captured_at <= moment)
                             .order_by(Capture.captured_at.desc()).limit(1)).first()
    after = session.scalars(base.where(Capture.captured_at > moment)
                            .order_by(Capture.captured_at.asc()).limit(1)).first()
    candidates: list[Capture] = [c for c in (before, after) if c is not None]
    return candidates[nearest_index(candidates, moment)]


def nearest_index(captures: list[Capture], moment: datetime | None) -> int:
    """Index of the capture (oldest first) closest to ``moment``: the latest when None, the
    later one of two equally close."""
    if moment is None:
        return len(captures) - 1
    return min(range(len(captures)),
               key=lambda i: (abs((captures[i].captured_at - moment).total_seconds()), -i))


def latest_good_captures(session: Session, keys: list[str]) -> dict[str, datetime]:
    """For each URL key, the time of its latest capture that answered below 400."""
    if not keys:
        return {}
    rows = session.execute(
        select(Capture.url_key, func.max(Capture.captured_at))
        .where(Capture.url_key.in_(keys), Capture.record_type.in_(REPLAYABLE_TYPES),
               Capture.status < 400)
        .group_by(Capture.url_key)).all()
    return {key: moment for key, moment in rows}


def capture_counts(session: Session, keys: list[str]) -> dict[str, int]:
    """Number of replayable captures per URL key."""
    if not keys:
        return {}
    rows = session.execute(
        select(Capture.url_key, func.count(Capture.id))
        .where(Capture.url_key.in_(keys), Capture.record_type.in_(REPLAYABLE_TYPES))
        .group_by(Capture.url_key)).all()
    return {key: int(count) for key, count in rows}


def original_response(session: Session, capture: Capture) -> Capture | None:
    """The capture whose record holds ``capture``'s payload: itself, or for a revisit the
    earliest response with its digest (None when the archive lacks it, as in a crawl
    imported without the earlier files it refers to)."""
    if capture.record_type != "revisit":
        return capture
    return session.scalars(
        select(Capture).where(Capture.payload_digest == capture.payload_digest,
                              Capture.record_type == "response")
        .order_by(Capture.captured_at).limit(1)).first()


def redirect_target(store: WarcStore, capture: Capture) -> str | None:
    """Where a 3xx capture's Location header points, made absolute (None when it cannot be
    read or says nowhere)."""
    try:
        record = open_record(store.read_record_bytes(capture.warc_file, capture.offset,
                                                     capture.length))
    except StorageError:
        return None
    headers = record.http_headers
    location = headers.get_header("Location") if headers is not None else None
    if not location:
        return None
    try:
        return resolve(location, capture.url)
    except ValueError:
        return None
