"""Read-only JSON API; errors share one shape: ``{"error": {"status", "message"}}``."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, jsonify, request
from sqlalchemy import select

from archiver.models import LinkState, Post
from archiver.report import link_rows, links_query
from web.views import Page, archive, paginate, query_int

blueprint = Blueprint("api", __name__, url_prefix="/api")


def _envelope(page: Page, items: list[dict[str, Any]]) -> Any:
    return jsonify({"items": items, "page": page.number, "pages": page.pages,
                    "total": page.total})


@blueprint.get("/links")
def links() -> Any:
    """Link health rows (the report's JSON), filtered by ``state``, ``domain``, ``post``."""
    state = request.args.get("state") or None
    if state and state not in {s.value for s in LinkState}:
        abort(400, f"unknown state {state!r}")
    post = query_int("post")
    with archive().db.session() as session:
        page = paginate(session, links_query(state, request.args.get("domain") or None, post))
        return _envelope(page, link_rows(session, page.items))


@blueprint.get("/posts")
def posts() -> Any:
    """Posts with their URLs, titles and dates."""
    with archive().db.session() as session:
        page = paginate(session, select(Post).order_by(Post.id))
        items = [{
            "id": post.id, "url": post.url, "title": post.title,
            "published_at": post.published_at.isoformat() + "Z" if post.published_at else None,
            "links": f"/api/links?post={post.id}",
        } for post in page.items]
    return _envelope(page, items)
