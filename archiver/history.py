"""History: daily counts of links by state (the dashboard's chart of link health over time),
and the thinning of old checks that only repeat their neighbours.

A link checked weekly adds 52 checks a year, nearly all the same "ok": a million links make
52 million rows a year.  Past ``health.check_history``, a success that has the same verdict,
status and final URL as the checks on both sides of it says nothing its neighbours do not, and
is dropped; so a run of identical successes keeps its first and last check (when it began to
answer so, and until when), and failures, changes and recent checks are all kept.  Restating a
link from its checks (``actions.restate_from_checks``) reads the checks since its last success,
which thinning never drops.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from archiver import figures
from archiver.clock import utcnow
from archiver.db import Database
from archiver.health import SUCCESS_VERDICTS
from archiver.models import Check, DailyStateCount, Link, LinkState

THIN_LINKS_PER_BATCH = 2000  # links whose checks one transaction looks through


def snapshot_state_counts(session: Session, day: date | None = None) -> dict[str, int]:
    """Store (replacing any earlier snapshot of the day) how many links are in each state,
    and the dashboard's figures with them (a round has just changed them)."""
    day = day or utcnow().date()
    counts = figures.refresh(session).states
    session.execute(delete(DailyStateCount).where(DailyStateCount.day == day))
    session.add_all(DailyStateCount(day=day, state=state, count=counts.get(state, 0))
                    for state in LinkState)
    return {str(state): int(count) for state, count in counts.items()}


def state_history(session: Session, days: int = 90) -> list[tuple[date, dict[str, int]]]:
    """The last ``days`` days that have a snapshot, oldest first, with counts by state."""
    since = utcnow().date() - timedelta(days=days - 1)
    rows = session.execute(select(DailyStateCount).where(DailyStateCount.day >= since)
                           .order_by(DailyStateCount.day)).scalars()
    history: dict[date, dict[str, int]] = {}
    for row in rows:
        history.setdefault(row.day, {})[row.state] = row.count
    return list(history.items())


def thin_checks(db: Database, keep_for: float, now: datetime | None = None) -> int:
    """Drop the checks older than ``keep_for`` seconds that repeat the success before and after
    them (verdict, status, final URL); return how many.  ``keep_for`` 0 keeps everything."""
    if keep_for <= 0:
        return 0
    horizon = (now or utcnow()) - timedelta(seconds=keep_for)
    removed = 0
    after = 0
    while True:
        with db.session() as session:
            batch = session.scalars(select(Link.id).where(Link.id > after)
                                    .order_by(Link.id).limit(THIN_LINKS_PER_BATCH)).all()
            if not batch:
                return removed
            removed += _thin_links(session, batch[0], batch[-1], horizon)
        after = batch[-1]


def _thin_links(session: Session, first: int, last: int, horizon: datetime) -> int:
    """Thin the checks of the links with IDs ``first`` to ``last``."""
    compared = (Check.verdict, Check.http_status, Check.final_url)
    order = (Check.checked_at, Check.id)
    neighbours = select(
        Check.id, Check.checked_at, *compared,
        *(func.lag(column).over(partition_by=Check.link_id, order_by=order)
          .label(f"before_{column.key}") for column in compared),
        *(func.lead(column).over(partition_by=Check.link_id, order_by=order)
          .label(f"after_{column.key}") for column in compared),
    ).where(Check.link_id.between(first, last)).subquery()
    row = neighbours.c
    repeats = [row[f"{side}_{name}"].is_not_distinct_from(row[name])
               for side in ("before", "after") for name in ("verdict", "http_status", "final_url")]
    middle = select(row.id).where(
        row.checked_at < horizon, row.verdict.in_([str(v) for v in SUCCESS_VERDICTS]),
        row.before_verdict.is_not(None), row.after_verdict.is_not(None), *repeats)
    result = session.execute(delete(Check).where(Check.id.in_(middle)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
