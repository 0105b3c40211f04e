"""Finding captures in the index: nearest to a time, latest good one, and replay paths."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from archiver.clock import warc_timestamp
from archiver.models import Capture
from archiver.urls import url_key

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


def nearest_capture(session: Session, url: str, moment: datetime | None) -> Capture | None:
    """The capture of ``url`` closest in time to ``moment`` (the latest when None)."""
    key = url_key(url)
    base = select(Capture).where(Capture.url_key == key,
                                 Capture.record_type.in_(REPLAYABLE_TYPES))
    latest = session.scalars(base.order_by(Capture.captured_at.desc()).limit(1)).first()
    if moment is None or latest is None:
        return latest
    before = session.scalars(base.where(Capture.captured_at <= moment)
                             .order_by(Capture.captured_at.desc()).limit(1)).first()
    after = session.scalars(base.where(Capture.captured_at > moment)
                            .order_by(Capture.captured_at.asc()).limit(1)).first()
    candidates = [c for c in (before, after) if c is not None]
    return min(candidates, key=lambda c: abs((c.captured_at - moment).total_seconds()))


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
