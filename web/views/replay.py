"""Replay: ``/web/<timestamp>[mp_]/<url>`` serves the nearest capture; ``/web/<url>`` redirects
to the latest one.  A URL never archived gets a "not archived" page, never a live fetch."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, redirect, render_template, request

from archiver.clock import warc_timestamp
from archiver.replay.lookup import nearest_capture, parse_timestamp, replay_path
from archiver.replay.render import render_capture
from web.views import archive

blueprint = Blueprint("replay", __name__)
_STAMPED = re.compile(r"^(\d{1,14})([a-z]{2}_)?/(.*)$", re.S)
_SCHEME_SLASH = re.compile(r"^(https?):/+", re.I)
MODIFIERS = frozenset({"", "mp_", "id_", "if_", "im_", "js_", "cs_"})


def _original_url(raw: str) -> str:
    """The archived URL from the path plus the request's own query string."""
    url = _SCHEME_SLASH.sub(lambda m: m.group(1).lower() + "://", raw)
    if "://" not in url:
        url = "http://" + url
    query = request.query_string.decode("latin-1")
    return f"{url}?{query}" if query else url


@blueprint.get("/web/<path:rest>")
def replay(rest: str) -> Any:
    """Serve the capture nearest to the timestamp, or redirect to the latest capture."""
    match = _STAMPED.match(rest)
    stamp, modifier = (match.group(1), match.group(2) or "") if match else (None, "")
    url = _original_url(match.group(3) if match else rest)
    if modifier not in MODIFIERS:
        return render_template("error.html", status=400,
                               message=f"unknown replay modifier {modifier!r}"), 400
    try:
        moment = parse_timestamp(stamp) if stamp else None
    except ValueError:
        moment = None
    store = archive().store
    with archive().db.session() as session:
        capture = nearest_capture(session, url, moment)
        if capture is None:
            return render_template("not_archived.html", url=url), 404
        exact = warc_timestamp(capture.captured_at)
        if stamp != exact:
            return redirect(replay_path(capture.captured_at, url, modifier), code=302)
        archived = render_capture(session, store, capture)
    response = Response(archived.body, status=archived.status)
    response.headers.clear()
    for name, value in archived.headers:
        response.headers.add(name, value)
    response.headers["Link"] = f'<{url}>; rel="original"'
    return response
