"""The dashboard's figures: cited links by state, totals and the posts with most broken references.

Counting them is cheap for a blog and about half a second for a million links on PostgreSQL
(every link by state, every capture, every broken link's citations), which is too slow for a
page.  So the figures are stored with a *change mark* — the highest ID of posts, citations,
links, checks and captures, and the time of the latest post change, each read from an index
in microseconds — and the time counting took.  Highest IDs see every new row; rows go away
only when a post changes: its citations are replaced (SQLite may even give the new rows the
old IDs) and its ``updated_at`` moves.  (Nothing deletes posts or links; a command that does
must forget the figures.)  The dashboard shows the stored figures while the mark is unchanged.  When
it has changed, the dashboard counts again, unless counting is expensive (``LIVE_BELOW_MS`` or
more) and the figures are younger than ``STALE_FACTOR`` times their cost: then it shows them
with the time they were counted.  The scheduler counts after every round (with the daily
snapshot), so a large, busy archive's dashboard is about one tick behind at most; the author's
actions, which change states without a new row, drop the stored figures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, exists, func, select
from sqlalchemy.orm import Session

from archiver.clock import utcnow
from archiver.models import (
    Capture,
    Check,
    Citation,
    DashboardFigures,
    Link,
    LinkState,
    Post,
    link_is_ignored,
    state_counts,
)

LIVE_BELOW_MS = 50.0  # counting cheaper than this is always done for the page itself
STALE_FACTOR = 100  # else stored figures may be shown while younger than 100x their cost
WORST_POSTS = 10
BROKEN = (LinkState.DEAD, LinkState.FAILING)
_ROW_ID = 1
_EPOCH = datetime(1970, 1, 1)


@dataclass
class Figures:
    """What the dashboard shows, and how fresh it is."""

    states: dict[str, int]
    totals: dict[str, int]
    worst: list[tuple[int, int]]  # (post ID, broken references), most broken first
    counted_at: datetime
    cost_ms: float
    current: bool  # nothing has changed since they were counted

    def as_json(self) -> dict[str, Any]:
        """The stored form of the figures."""
        return {"states": self.states, "totals": self.totals,
                "worst": [list(pair) for pair in self.worst]}


def is_broken() -> ColumnElement[bool]:
    """SQL condition: the link counts as a broken reference (dead or failing, not ignored)."""
    return and_(Link.state.in_(BROKEN), ~link_is_ignored())


def change_mark(session: Session) -> list[int]:
    """Changes whenever a row the figures count is added or removed: the highest IDs of the
    counted tables and the latest post change (in microseconds)."""
    marks = select(*(select(func.max(column)).scalar_subquery() for column in
                     (Post.id, Citation.id, Link.id, Check.id, Capture.id)),
                   select(func.max(Post.updated_at)).scalar_subquery())
    *ids, latest_change = session.execute(marks).one()
    changed = (latest_change - _EPOCH) // timedelta(microseconds=1) if latest_change else 0
    return [int(value or 0) for value in ids] + [changed]


def count(session: Session) -> Figures:
    """Count the figures now (what a large archive's scheduler does after each round)."""
    started = time.perf_counter()
    # Cited links only, as ``archiver report`` lists them: one the author removed from every
    # post stays in the archive but is none of the blog's references.
    cited = state_counts().where(exists().where(Citation.link_id == Link.id))
    states = {str(state): int(number) for state, number in session.execute(cited)}
    totals = {"posts": session.scalar(select(func.count(Post.id))) or 0,
              "links": sum(states.values()),
              "captures": session.scalar(select(func.count(Capture.id))) or 0}
    # Counted from the citations and the links' index alone; the posts are read by the page.
    broken_refs = func.count(func.distinct(Citation.link_id))
    worst = session.execute(
        select(Citation.post_id, broken_refs).join(Link, Link.id == Citation.link_id)
        .where(is_broken())
        .group_by(Citation.post_id).order_by(broken_refs.desc(), Citation.post_id)
        .limit(WORST_POSTS)).all()
    return Figures(states=states, totals=totals,
                   worst=[(int(post), int(number)) for post, number in worst],
                   counted_at=utcnow(), cost_ms=(time.perf_counter() - started) * 1000,
                   current=True)


def refresh(session: Session) -> Figures:
    """Count the figures and store them with the change mark they were counted at."""
    return _count_and_store(session, change_mark(session))


def _count_and_store(session: Session, mark: list[int]) -> Figures:
    figures = count(session)
    row = session.get(DashboardFigures, _ROW_ID)
    if row is None:
        row = DashboardFigures(id=_ROW_ID)
        session.add(row)
    row.counted_at, row.cost_ms = figures.counted_at, figures.cost_ms
    row.mark, row.figures = mark, figures.as_json()
    return figures


def forget(session: Session) -> None:
    """Drop the stored figures (an action changed states without adding a row)."""
    session.execute(delete(DashboardFigures))


def for_dashboard(session: Session) -> Figures:
    """The figures to show now: stored ones while current or, when counting is expensive,
    while young enough; otherwise counted (and stored) for this page."""
    mark = change_mark(session)
    row = session.get(DashboardFigures, _ROW_ID)
    if row is not None:
        current = row.mark == mark
        young = (row.cost_ms >= LIVE_BELOW_MS and utcnow() - row.counted_at
                 < timedelta(milliseconds=row.cost_ms * STALE_FACTOR))
        if current or young:
            stored = row.figures
            return Figures(states=stored["states"], totals=stored["totals"],
                           worst=[(int(p), int(n)) for p, n in stored["worst"]],
                           counted_at=row.counted_at, cost_ms=row.cost_ms, current=current)
    return _count_and_store(session, mark)
