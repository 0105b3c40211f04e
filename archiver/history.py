"""Daily counts of links by state, kept for the dashboard's chart of link health over time."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from archiver import figures
from archiver.clock import utcnow
from archiver.models import DailyStateCount, LinkState


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
