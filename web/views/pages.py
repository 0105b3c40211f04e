"""HTML pages for the author: dashboard, posts, links."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from flask import Blueprint, abort, render_template, request
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from archiver import figures
from archiver.clock import utcnow
from archiver.history import state_history
from archiver.models import (
    Capture,
    Citation,
    Link,
    LinkState,
    Post,
    link_is_ignored,
)
from archiver.replay.lookup import replay_path
from archiver.report import link_rows, links_query
from web.views import archive, paginate, query_int, row_or_404, settings

blueprint = Blueprint("pages", __name__)


CHART_HEIGHT = 120
CHART_BAR = 8


Day = tuple[date, dict[str, int] | None]  # a day and its counts by state (None: no snapshot)


def chart_days(history: list[tuple[date, dict[str, int]]], today_counts: dict[str, int],
               today: date) -> list[Day]:
    """Every day from the first snapshot to today, the days without a snapshot included;
    today's counts are ``today_counts`` (those the page shows), not a round's snapshot, which
    an action or a discovery since has made old."""
    if not history:
        return []
    by_day: dict[date, dict[str, int] | None] = {day: counts for day, counts in history}
    by_day[today] = today_counts
    first, last = min(by_day), max(by_day)
    return [(day, by_day.get(day)) for day in
            (first + timedelta(days=n) for n in range((last - first).days + 1))]


def chart(days: list[Day]) -> list[dict[str, Any]]:
    """Stacked bars (one slot per day, one segment per state) for the dashboard's SVG chart;
    a day without a snapshot is an empty slot."""
    tallest = max((sum(counts.values()) for _, counts in days if counts), default=0) or 1
    bars = []
    for index, (day, counts) in enumerate(days):
        y = float(CHART_HEIGHT)
        segments = []
        for state in (s.value for s in LinkState):
            number = (counts or {}).get(state, 0)
            height = number / tallest * CHART_HEIGHT
            y -= height
            if height:
                segments.append({"state": state, "y": round(y, 2), "height": round(height, 2),
                                 "count": number})
        bars.append({"x": index * (CHART_BAR + 2), "day": day.isoformat(),
                     "counts": counts, "segments": segments})
    return bars


@blueprint.get("/")
def dashboard() -> str:
    """Counts by state, link health over time, and the posts with most broken references."""
    with archive().db.session() as session:
        shown = figures.for_dashboard(session)
        posts = {post.id: post for post in session.scalars(
            select(Post).where(Post.id.in_([post_id for post_id, _ in shown.worst])))}
        worst = [(posts[post_id], broken) for post_id, broken in shown.worst
                 if post_id in posts]
        history = state_history(session)
    states = [(state.value, shown.states.get(state.value, 0)) for state in LinkState]
    days = chart_days(history, dict(states), utcnow().date())
    return render_template("dashboard.html", states=states, totals=shown.totals, worst=worst,
                           figures=shown, state_names=[state for state, _ in states],
                           bars=chart(days), chart_height=CHART_HEIGHT,
                           chart_width=max(1, len(days)) * (CHART_BAR + 2),
                           bar_width=CHART_BAR)


@blueprint.get("/posts")
def posts() -> str:
    """Every post, newest first, with its reference counts."""
    with archive().db.session() as session:
        page = paginate(session, select(Post).order_by(Post.published_at.desc().nulls_last(),
                                                       Post.id.desc()))
        ids = [post.id for post in page.items]
        stats = {
            post_id: (total, broken or 0)
            for post_id, total, broken in session.execute(
                select(Citation.post_id, func.count(func.distinct(Citation.link_id)),
                       func.count(func.distinct(Link.id)).filter(figures.is_broken()))
                .join(Link, Link.id == Citation.link_id)
                .where(Citation.post_id.in_(ids)).group_by(Citation.post_id)).all()
        }
    return render_template("posts.html", page=page, stats=stats)


@blueprint.get("/posts/<int:post_id>")
def post(post_id: int) -> str:
    """A post and its references: state, verdict and archived copy of each."""
    with archive().db.session() as session:
        found = row_or_404(session, Post, post_id, "post")
        citations = list(session.scalars(select(Citation).where(Citation.post_id == post_id)
                                         .order_by(Citation.id)))
        links = [citation.link for citation in citations]
        rows = {row["id"]: row for row in link_rows(session, links)}
        ignored = set(session.scalars(select(Link.id).where(
            Link.id.in_(rows), link_is_ignored())))
        items = [(citation, rows[citation.link_id]) for citation in citations]
    return render_template("post.html", post=found, items=items, ignored=ignored)


@dataclass
class Slice:
    """One page of links in ID order, and the IDs to page on from (None at either end)."""

    items: list[Link]
    after: int | None  # the next page starts after this ID
    before: int | None  # the previous page ends before this ID


def keyset_slice(session: Session, query: Select[Any], size: int) -> Slice:
    """The page of ``query`` (ordered by link ID) after ``?after=`` or before ``?before=``.

    It reads ``size + 1`` rows through the index from where the page starts, however deep,
    and never counts the whole filter: the extra row says whether there is a next page.
    """
    after, before = query_int("after"), query_int("before")
    if before is not None:
        found = list(session.scalars(query.where(Link.id < before).order_by(None)
                                     .order_by(Link.id.desc()).limit(size + 1)))
        items = found[:size][::-1]
        return Slice(items, items[-1].id if items else None,
                     items[0].id if len(found) > size else None)
    if after is not None:
        query = query.where(Link.id > after)
    found = list(session.scalars(query.limit(size + 1)))
    items = found[:size]
    return Slice(items, items[-1].id if len(found) > size else None,
                 items[0].id if after is not None and items else None)


@blueprint.get("/links")
def links() -> str:
    """All links, filterable by state and domain, a page at a time in ID order."""
    state = request.args.get("state") or None
    domain = request.args.get("domain") or None
    if state and state not in {s.value for s in LinkState}:
        abort(400, f"unknown state {state!r}")
    with archive().db.session() as session:
        page = keyset_slice(session, links_query(state, domain), settings()["web.page_size"])
        rows = link_rows(session, page.items)
    return render_template("links.html", page=page, rows=rows, state=state, domain=domain,
                           states=[s.value for s in LinkState])


@blueprint.get("/links/<int:link_id>")
def link(link_id: int) -> str:
    """A link: its state, the posts citing it, its checks and its captures."""
    with archive().db.session() as session:
        found = row_or_404(session, Link, link_id, "link")
        row = link_rows(session, [found])[0]
        checks = list(found.checks[:100])
        captures = list(session.scalars(select(Capture).where(Capture.url_key == found.url_key)
                                        .order_by(Capture.captured_at.desc()).limit(200)))
        citing = list(session.execute(select(Post, Citation)
                                      .join(Citation, Citation.post_id == Post.id)
                                      .where(Citation.link_id == link_id)).all())
    return render_template("link.html", link=found, row=row, checks=checks, captures=captures,
                           citing=citing, replay_path=replay_path)
