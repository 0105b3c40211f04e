"""Link health rows for the author: the same data behind ``archiver report`` and the web UI."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy import Select, exists, func, literal, select
from sqlalchemy.orm import Session

from archiver.models import Check, Citation, Link, Post, host_in_domain, link_is_ignored
from archiver.replay.lookup import capture_counts, latest_good_captures, replay_path

REPORT_FIELDS = ("url", "state", "verdict", "http_status", "final_url", "checked_at",
                 "failures", "first_failure_at", "last_alive_at", "drift", "captures",
                 "archived_url", "posts", "evidence", "overridden", "cited")
STATE_COLOURS = {"alive": "green", "failing": "yellow", "dead": "red", "unknown": "magenta",
                 "pending": "bright_black"}


def links_query(state: str | None = None, domain: str | None = None,
                post_id: int | None = None, cited_only: bool = False) -> Select[Any]:
    """Links filtered by state, host (domain or subdomain) and citing post, in ID order;
    ``cited_only`` leaves out the links no post cites any more."""
    query = select(Link).order_by(Link.id)
    if state:  # read in ID order from the (ignored, state, id, host) index
        query = query.where(~link_is_ignored(), Link.state == state)
    else:
        # Few links are ignored: read in ID order and pass over them. Put as "= false", the
        # condition would lead a planner without statistics (SQLite's, by default) to the
        # ignored flag's index and a sort of every link.
        query = query.where(link_is_ignored().is_not(True))
    if domain:
        bare = domain.lower().removeprefix("www.")  # www. and other subdomains, any port
        query = query.where(host_in_domain(Link.host, literal(bare)))
    if post_id is not None:
        query = query.where(Link.id.in_(select(Citation.link_id)
                                        .where(Citation.post_id == post_id)))
    if cited_only:
        # A link the author removed from every post stays in the archive, cited by none.
        query = query.where(exists().where(Citation.link_id == Link.id))
    return query


def _iso(value: Any) -> str | None:
    return value.isoformat() + "Z" if value is not None else None


def latest_evidence(session: Session, link_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Evidence of each link's latest check (status chain, headers, timing, error)."""
    if not link_ids:
        return {}
    latest = (select(Check.link_id, func.max(Check.checked_at).label("at"))
              .where(Check.link_id.in_(link_ids)).group_by(Check.link_id).subquery())
    rows = session.execute(
        select(Check).join(latest, (Check.link_id == latest.c.link_id)
                           & (Check.checked_at == latest.c.at))).scalars()
    return {check.link_id: {**check.evidence, "http_status": check.http_status,
                            "final_url": check.final_url, "elapsed_ms": check.elapsed_ms,
                            "error": check.error, "checked_at": _iso(check.checked_at)}
            for check in rows}


def link_rows(session: Session, links: list[Link]) -> list[dict[str, Any]]:
    """Report rows (see REPORT_FIELDS) for the given links, in their order."""
    keys = [link.url_key for link in links]
    latest = latest_good_captures(session, keys)
    counts = capture_counts(session, keys)
    posts: dict[int, list[str]] = defaultdict(list)
    evidence = latest_evidence(session, [link.id for link in links])
    if links:
        rows = session.execute(
            select(Citation.link_id, Post.url).join(Post, Post.id == Citation.post_id)
            .where(Citation.link_id.in_([link.id for link in links]))
            .distinct().order_by(Post.url)).all()
        for link_id, post_url in rows:
            posts[link_id].append(post_url)
    result = []
    for link in links:
        moment = latest.get(link.url_key)
        result.append({
            "id": link.id,
            "url": link.url,
            "state": link.state,
            "verdict": link.last_verdict,
            "http_status": link.http_status,
            "final_url": link.final_url,
            "checked_at": _iso(link.last_checked_at),
            "failures": link.consecutive_failures,
            "first_failure_at": _iso(link.first_failure_at),
            "last_alive_at": _iso(link.last_alive_at),
            "drift": link.drift,
            "captures": counts.get(link.url_key, 0),
            "archived_url": replay_path(moment, link.url) if moment else None,
            "posts": posts.get(link.id, []),
            "evidence": evidence.get(link.id),
            # The author's "not broken" holds: the state says alive whatever the verdict.
            "overridden": link.override_response is not None,
            # False once the author removed it from every post: kept, but no longer theirs.
            "cited": bool(posts.get(link.id)),
        })
    return result


def render(rows: list[dict[str, Any]], fmt: str,
           colour: Callable[[str, str], str] | None = None) -> str:
    """Rows as JSON, CSV or a table (states coloured by ``colour(text, state)`` if given)."""
    if fmt == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["id", *REPORT_FIELDS], lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "posts": " ".join(row["posts"]),
                             "evidence": json.dumps(row["evidence"]) if row["evidence"] else ""})
        return buffer.getvalue().rstrip("\n")
    return render_table(rows, colour)


def render_table(rows: list[dict[str, Any]],
                 colour: Callable[[str, str], str] | None = None) -> str:
    """A compact text table: state, verdict, status, captures, drift, URL."""
    paint = colour or (lambda text, _state: text)
    lines = [f"{'STATE':<8} {'VERDICT':<18} {'HTTP':>4} {'CAPS':>4} {'DRIFT':>5}  URL"]
    for row in rows:
        drift = f"{row['drift']:.2f}" if row["drift"] is not None else "-"
        state = paint(f"{row['state']:<8}", row["state"])
        uncited = "" if row.get("cited", True) else "  (no post cites it now)"
        lines.append(f"{state} "
                     f"{row['verdict'] or '-':<18} {row['http_status'] or '-':>4} "
                     f"{row['captures']:>4} {drift:>5}  {row['url']}{uncited}")
    dead = sum(1 for row in rows if row["state"] == "dead")
    lines.append(f"{len(rows)} links, {dead} dead")
    return "\n".join(lines)
