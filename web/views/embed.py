"""What readers' browsers use on the blog itself: ``/api/refs``, ``/embed.js``, and a post's
references page (every reference with all its archived copies).

``/api/refs`` and ``/embed.js`` are public, read-only and cross-origin (``*``, no credentials);
neither reads nor sets a cookie.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import cache
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, abort, current_app, jsonify, render_template, request
from sqlalchemy import func, select

from archiver.models import Capture, Citation, Link, Post, link_is_ignored
from archiver.replay.lookup import REPLAYABLE_TYPES, replay_path
from archiver.urls import InvalidURL, canonicalize, url_key
from web.views import archive, row_or_404

blueprint = Blueprint("embed", __name__)

MAX_REFS = 200
REFS_MAX_AGE = 300
SCRIPT_MAX_AGE = 3600
SCRIPT_PATH = Path(__file__).resolve().parent.parent / "static" / "embed.js"
CORS_ENDPOINTS = frozenset({"embed.refs", "embed.script"})


@blueprint.after_request
def cross_origin(response: Response) -> Response:
    """Let any site read ``/api/refs`` and load ``/embed.js`` (errors included); no credentials."""
    if request.endpoint in CORS_ENDPOINTS:
        response.headers["Access-Control-Allow-Origin"] = "*"
        if response.status_code >= 400:
            response.headers["Cache-Control"] = "no-store"
    return response


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds") + "Z"


def _http_date(moment: datetime) -> str:
    return format_datetime(moment.replace(tzinfo=UTC), usegmt=True)


def lookup_refs(canonical: list[str]) -> dict[str, tuple[str, datetime | None]]:
    """State and latest good capture time of each known, not ignored link, in one query."""
    if not canonical:
        return {}
    keys = sorted({url_key(url) for url in canonical})
    latest = (select(Capture.url_key, func.max(Capture.captured_at).label("at"))
              .where(Capture.url_key.in_(keys), Capture.record_type.in_(REPLAYABLE_TYPES),
                     Capture.status < 400)
              .group_by(Capture.url_key).subquery())
    query = (select(Link.url, Link.state, latest.c.at)
             .outerjoin(latest, latest.c.url_key == Link.url_key)
             .where(Link.url.in_(canonical), ~link_is_ignored()))
    with archive().db.session() as session:
        return {url: (state, at) for url, state, at in session.execute(query).all()}


@blueprint.route("/api/refs", methods=["GET", "OPTIONS"])
def refs() -> Any:
    """State and latest archived copy of each ``url`` asked for (at most 200), for any origin."""
    if request.method == "OPTIONS":
        preflight = current_app.response_class(status=204)
        preflight.headers.update({
            "Access-Control-Allow-Methods": "GET, OPTIONS",
            "Access-Control-Allow-Headers": "*",
            "Access-Control-Max-Age": "86400",
        })
        return preflight
    asked = request.args.getlist("url")
    if not asked:
        abort(400, "give one or more url parameters")
    if len(asked) > MAX_REFS:
        abort(400, f"at most {MAX_REFS} URLs per request, got {len(asked)}")
    canonical: list[str | None] = []
    errors: list[str | None] = []
    for url in asked:
        try:
            canonical.append(canonicalize(url))
            errors.append(None)
        except InvalidURL as exc:
            canonical.append(None)
            errors.append(f"invalid URL: {exc}")
    known = lookup_refs(sorted({url for url in canonical if url is not None}))
    origin = request.host_url.rstrip("/")
    items = []
    for url, canon, error in zip(asked, canonical, errors, strict=True):
        state, moment = known.get(canon, (None, None)) if canon else (None, None)
        items.append({
            "url": url,
            "state": state,
            "archived_url": origin + replay_path(moment, canon) if moment and canon else None,
            "archived_at": _iso(moment) if moment else None,
            "memento_datetime": _http_date(moment) if moment else None,
            "error": error,
        })
    response = jsonify({"items": items})
    response.headers["Cache-Control"] = f"public, max-age={REFS_MAX_AGE}"
    return response


@cache
def _script() -> tuple[bytes, str]:
    data = SCRIPT_PATH.read_bytes()
    return data, hashlib.sha256(data).hexdigest()[:32]


@blueprint.get("/embed.js")
def script() -> Response:
    """The script a blog includes to mark archived links and offer copies of dead ones."""
    data, etag = _script()
    response = current_app.response_class(
        data, content_type="application/javascript; charset=utf-8")
    response.headers["Cache-Control"] = f"public, max-age={SCRIPT_MAX_AGE}"
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    response.set_etag(etag)
    response.make_conditional(request)
    return response


@blueprint.get("/posts/<int:post_id>/references")
def references(post_id: int) -> str:
    """A post's references for its readers: state and every archived copy of each."""
    with archive().db.session() as session:
        post = row_or_404(session, Post, post_id, "post")
        cited = session.execute(
            select(Citation, Link).join(Link, Link.id == Citation.link_id)
            .where(Citation.post_id == post_id, ~link_is_ignored())
            .order_by(Citation.id)).all()
        keys = sorted({link.url_key for _, link in cited})
        captures: dict[str, list[Capture]] = defaultdict(list)
        if keys:
            for capture in session.scalars(
                    select(Capture).where(Capture.url_key.in_(keys),
                                          Capture.record_type.in_(REPLAYABLE_TYPES))
                    .order_by(Capture.captured_at.desc(), Capture.id.desc())):
                captures[capture.url_key].append(capture)
        seen: set[int] = set()
        items = []
        for citation, link in cited:
            if link.id in seen:  # the same link cited twice (two spellings): list it once
                continue
            seen.add(link.id)
            copies = [{"path": replay_path(c.captured_at, link.url), "at": c.captured_at,
                       "status": c.status, "good": c.status is not None and c.status < 400}
                      for c in captures.get(link.url_key, [])]
            items.append({"text": citation.anchor_text or citation.href, "url": link.url,
                          "state": link.state, "verdict": link.last_verdict,
                          "context": citation.context, "copies": copies})
    return render_template("references.html", post=post, items=items)
