"""Replay and Memento.

- ``/web/<timestamp>/<url>``: the frame page (a banner around the archived document);
- ``/web/<timestamp>mp_/<url>``: the archived document alone (``id_``: its bytes unrewritten);
- ``/web/<url>``: the TimeGate, honouring ``Accept-Datetime``;
- ``/timemap/link/<url>`` and ``/timemap/json/<url>``: every memento of a URL.

A timestamp may be any prefix of 14 digits; the nearest capture answers, after a redirect to its
exact timestamp.  A URL never archived gets a "not archived" page, never a live fetch.
Archived documents are sandboxed (CSP ``sandbox``, no same-origin) and may be served from a
separate origin (``web.replay_origin``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any
from urllib.parse import unquote, unquote_to_bytes, urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
)
from sqlalchemy import select

from archiver.clock import warc_timestamp
from archiver.models import Capture, Link
from archiver.replay.cache import RenderCache, render_cached
from archiver.replay.lookup import captures_of, nearest_index, parse_timestamp, replay_path
from archiver.replay.memento import (
    http_date,
    link_header,
    parse_accept_datetime,
    timemap_json,
    timemap_link,
)
from archiver.replay.render import ReplayError
from archiver.urls import FETCHABLE_SCHEMES, scheme_of, url_key
from web.views import archive, settings

blueprint = Blueprint("replay", __name__)
_STAMPED = re.compile(r"^(\d{1,14})([a-z]{2}_)?/(.*)$", re.S)
_SCHEME_SLASH = re.compile(r"^(https?):/+", re.I)
_UNPRINTABLE = re.compile(rb"[^\x21-\x7e]")
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_ESCAPES = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
BARE_MODIFIERS = frozenset({"mp_", "id_", "if_", "im_", "js_", "cs_", "oe_"})
# What a page loads (Sec-Fetch-Dest) rather than shows: answered with the nearest capture
# directly (its exact address in Content-Location), not with a redirect to its timestamp, as
# pywb does. A page's requisites are captured seconds after it, so otherwise every one of
# them would cost the browser two requests.
SUBRESOURCE_DESTINATIONS = frozenset({
    "image", "style", "script", "font", "audio", "video", "track", "object", "embed",
    "manifest", "worker", "sharedworker", "audioworklet", "paintworklet", "xslt",
})
FRAME_CSP = ("default-src 'self'; frame-src 'self' {replay}; img-src 'self' data:; "
             "style-src 'self'; frame-ancestors 'self'; form-action 'self'; base-uri 'none'")


def _undecoded(path: str) -> str:
    """A decoded request path with what decoding made ambiguous encoded again: a '?' or '#' in
    it came as %3F or %23 (and is no query or fragment), a '%' as %25."""
    return path.replace("%", "%25").replace("?", "%3F").replace("#", "%23")


def _raw_path() -> str | None:
    """The request's path as the client sent it, its bytes beyond printable ASCII
    percent-encoded; None when the server does not pass it (REQUEST_URI or RAW_URI, which
    waitress, gunicorn and werkzeug set)."""
    raw = request.environ.get("REQUEST_URI") or request.environ.get("RAW_URI")
    if not raw:
        return None
    try:
        target = raw.encode("latin-1")  # WSGI gives the bytes as Latin-1 text
    except UnicodeEncodeError:
        return None
    path = re.split(rb"[?#]", target, maxsplit=1)[0]
    if not path.startswith(b"/"):  # absolute-form (as to a proxy): what follows the authority
        path = b"/" + path.partition(b"://")[2].partition(b"/")[2]
    return _UNPRINTABLE.sub(lambda m: b"%%%02X" % m[0][0], path).decode("ascii")


def _after_bytes(raw: str, count: int) -> str | None:
    """What of a percent-encoded ASCII path follows its first ``count`` decoded bytes."""
    at = 0
    while count > 0 and at < len(raw):
        at += 3 if _ESCAPE.match(raw, at) else 1
        count -= 1
    return raw[at:] if count == 0 else None


def _readable(raw: str) -> str:
    """A raw path with its escapes of UTF-8 text decoded, as the server decodes them, but
    with what that would lose kept encoded: '%', '?', '#' (see ``_undecoded``) and bytes that
    are no UTF-8 (an old site's Latin-1 'caf%E9', which decodes to U+FFFD)."""
    def run(match: re.Match[str]) -> str:
        text = unquote_to_bytes(match[0]).decode("utf-8", "surrogateescape")
        return "".join(f"%{ord(char) - 0xDC00:02X}" if "\udc80" <= char <= "\udcff"
                       else _undecoded(char) for char in text)
    return _ESCAPES.sub(run, _LONE_PERCENT.sub("%25", raw))


def _address(rest: str) -> str:
    """What follows the route's prefix (``/web/``...) in the request path, as ``_readable``
    gives it from the raw request, else (no raw request, or one that does not match) the
    decoded ``rest`` encoded again where decoding made it ambiguous."""
    raw, path = _raw_path(), request.script_root + request.path
    if raw is None or not path.endswith(rest):
        return _undecoded(rest)
    tail = _after_bytes(raw, len(path[: len(path) - len(rest)].encode()))
    if tail is None or unquote(tail, errors="replace") != rest:
        return _undecoded(rest)
    return _readable(tail)


def _original_url(address: str) -> str:
    """The archived URL from the path (see ``_address``) plus the request's own query
    string; only http(s) URLs are archived, and pages link to the URL they were asked for
    (``javascript:`` must not reach an ``href``)."""
    url = _SCHEME_SLASH.sub(lambda m: m.group(1).lower() + "://", address)
    if "://" not in url:
        url = "http://" + url
    if scheme_of(url) not in FETCHABLE_SCHEMES:
        abort(400, "only http and https addresses are archived")
    query = request.query_string.decode("latin-1")
    return f"{url}?{query}" if query else url


def replay_origin() -> str:
    """The configured origin for archived documents ('' when they share the UI's origin)."""
    return str(settings()["web.replay_origin"]).rstrip("/")


def on_replay_origin() -> bool:
    """True when this request came in on the separate replay origin."""
    origin = replay_origin()
    return bool(origin) and urlsplit(origin).netloc.lower() == request.host.lower()


def render_cache() -> RenderCache:
    """This process's cache of rendered archived documents (``web.replay_cache_bytes``)."""
    cache = current_app.extensions.get("replay_cache")
    if cache is None:
        cache = current_app.extensions.setdefault(
            "replay_cache", RenderCache(int(settings()["web.replay_cache_bytes"])))
    return cache  # type: ignore[no-any-return]


def _not_archived(url: str) -> Any:
    return render_template("not_archived.html", url=url), 404


def _memento_headers(response: Response, url: str, captures: list[Capture],
                     index: int) -> Response:
    response.headers["Memento-Datetime"] = http_date(captures[index].captured_at)
    response.headers["Link"] = link_header(url, captures, index)
    return response


@blueprint.get("/web/<path:rest>")
def replay(rest: str) -> Any:
    """Frame page, bare document or TimeGate, depending on the path."""
    address = _address(rest)
    match = _STAMPED.match(address)
    if match is None:
        return timegate(_original_url(address))
    stamp, modifier, url = match.group(1), match.group(2) or "", _original_url(match.group(3))
    if modifier and modifier not in BARE_MODIFIERS:
        abort(400, f"unknown replay modifier {modifier!r}")
    try:
        moment = parse_timestamp(stamp)
    except ValueError:
        moment = None
    # A browser says what a request is for: only a top-level page gets the banner frame;
    # an iframe, image or style sheet gets the archived document itself.
    destination = request.headers.get("Sec-Fetch-Dest", "document")
    bare = bool(modifier) or destination != "document" or on_replay_origin()
    if bare and replay_origin() and not on_replay_origin():
        query = request.query_string.decode("latin-1")
        path = request.path.removesuffix(rest) + address
        return redirect(replay_origin() + path + (f"?{query}" if query else ""), code=302)
    with archive().db.session() as session:
        captures = captures_of(session, url)
        if not captures:
            return _not_archived(url)
        index = nearest_index(captures, moment)
        capture = captures[index]
        exact = stamp == warc_timestamp(capture.captured_at)
        if not exact and not (bare and destination in SUBRESOURCE_DESTINATIONS):
            return redirect(replay_path(capture.captured_at, url, modifier), code=302)
        if not bare:
            return _frame(session, url, captures, index)
        try:
            archived = render_cached(render_cache(), session, archive().store, capture,
                                     rewrite=modifier != "id_",
                                     scripts=settings()["web.replay_scripts"],
                                     origin=request.host_url.rstrip("/"),
                                     max_bytes=4 * settings()["fetch.max_body_bytes"],
                                     modifier=modifier)
        except ReplayError as exc:  # too large, unreadable head, orphan revisit, odd status
            abort(502, str(exc))
    body = archived.stream() if archived.stream is not None else archived.body
    response = Response(body, status=archived.status, direct_passthrough=True)
    response.headers.clear()
    for name, value in archived.headers:
        response.headers.add(name, value)
    if not exact:
        response.headers["Content-Location"] = replay_path(capture.captured_at, url, modifier)
    if archived.status == 200 and archived.length is not None:
        # A player seeks an archived video or audio by asking for byte ranges.
        response.make_conditional(request, accept_ranges=True,
                                  complete_length=archived.length)
    return _memento_headers(response, url, captures, index)


def _frame(session: Any, url: str, captures: list[Capture], index: int) -> Response:
    """The banner page: what this is, from when, where it lived, and the other captures."""
    capture = captures[index]
    link = session.scalar(select(Link).where(Link.url_key == url_key(url)).limit(1))
    calendar: dict[int, dict[str, list[Capture]]] = defaultdict(lambda: defaultdict(list))
    for item in captures:
        calendar[item.captured_at.year][item.captured_at.strftime("%B")].append(item)
    html = render_template(
        "frame.html", url=url, capture=capture, index=index, captures=captures, link=link,
        previous=captures[index - 1] if index > 0 else None,
        following=captures[index + 1] if index + 1 < len(captures) else None,
        calendar={year: dict(months) for year, months in sorted(calendar.items())},
        document=replay_origin() + replay_path(capture.captured_at, url, "mp_"),
        replay_path=replay_path, sandbox=_frame_sandbox())
    response = Response(html, content_type="text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = FRAME_CSP.format(replay=replay_origin())
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return _memento_headers(response, url, captures, index)


def _frame_sandbox() -> str:
    tokens = ["allow-popups", "allow-popups-to-escape-sandbox"]
    if settings()["web.replay_scripts"]:
        tokens.append("allow-scripts")  # never with allow-same-origin
    return " ".join(tokens)


def timegate(url: str) -> Any:
    """Redirect to the memento nearest ``Accept-Datetime`` (the latest when absent)."""
    wanted = request.headers.get("Accept-Datetime")
    try:
        moment = parse_accept_datetime(wanted) if wanted else None
    except ValueError as exc:
        abort(400, str(exc))
    with archive().db.session() as session:
        captures = captures_of(session, url)
        if not captures:
            missing = Response(render_template("not_archived.html", url=url), status=404)
            missing.headers["Link"] = link_header(url, [], None)
            return missing
        capture = captures[nearest_index(captures, moment)]
        found = redirect(replay_path(capture.captured_at, url), code=302)
        found.headers["Vary"] = "accept-datetime"
        found.headers["Link"] = link_header(url, captures, None)
    return found


@blueprint.get("/timemap/<any(link, json):form>/<path:rest>")
def timemap(form: str, rest: str) -> Any:
    """Every memento of a URL, in application/link-format or as JSON."""
    url = _original_url(_address(rest))
    with archive().db.session() as session:
        captures = captures_of(session, url)  # rows read inside the session
        if not captures:
            abort(404, "not archived")
        if form == "json":
            return jsonify(timemap_json(url, captures))
        return Response(timemap_link(url, captures), content_type="application/link-format")


def refuse_ui_on_replay_origin() -> Any:
    """On the replay origin only archived documents are served: no UI, no API, no login."""
    if on_replay_origin() and not request.path.startswith("/web/"):
        abort(404, "this origin serves archived documents only")
    return None
