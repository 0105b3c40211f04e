"""Memento (RFC 7089), nearest-capture choice, fuzzy matching, frame and replay origin."""

from __future__ import annotations

import contextlib
import http.client
import re
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from archiver.archive import Archive
from archiver.clock import warc_timestamp
from archiver.demo.fixtureweb import Site
from archiver.jobs import capture_link
from archiver.models import Capture, Link
from archiver.replay.cache import RenderCache
from archiver.replay.lookup import fuzzy_url, parse_timestamp
from archiver.replay.memento import http_date, link_header, parse_accept_datetime, timemap_link
from archiver.replay.render import ArchivedResponse
from archiver.urls import canonicalize
from tests.conftest import RawSite, response
from tests.test_capture import PNG, add_link, stamp_of
from tests.test_web import archived_link_href
from web import create_app

DAYS = [datetime(2008, 6, 14, 18, 30), datetime(2012, 3, 1, 9, 0), datetime(2020, 1, 5, 12, 0)]
CYRILLIC_PATH = "/wiki/%D0%A1%D0%BE%D0%B2%D0%B5%D1%82%D1%81%D0%BA%D0%B0%D1%8F"
CYRILLIC_ROUTE = "/wiki/Советская"  # the path as the loopback site routes it (decoded)


@pytest.fixture
def history(archive: Archive, site: Site) -> str:
    """Three captures of one page, moved back in time to 2008, 2012 and 2020."""
    site.page("/article", "<p>article</p>")
    url = site.url("/article")
    link_id = add_link(archive, url)
    for _ in DAYS:
        capture_link(archive, link_id)
    with archive.db.session() as session:
        rows = session.scalars(select(Capture).where(Capture.url == url)
                               .order_by(Capture.id)).all()
        for row, day in zip(rows, DAYS, strict=True):
            row.captured_at = day
    return url


def test_timestamps_any_prefix() -> None:
    assert parse_timestamp("2008") == datetime(2008, 1, 1)
    assert parse_timestamp("200806141830") == datetime(2008, 6, 14, 18, 30)
    with pytest.raises(ValueError):
        parse_timestamp("20x8")


@pytest.mark.parametrize(("stamp", "expected"), [
    ("2008", DAYS[0]), ("2011", DAYS[1]), ("20120301", DAYS[1]), ("2019", DAYS[2]),
    ("2030", DAYS[2]), ("1999", DAYS[0]),
])
def test_nearest_capture_is_chosen(client: FlaskClient, history: str, stamp: str,
                                   expected: datetime) -> None:
    response = client.get(f"/web/{stamp}mp_/{history}")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/web/{warc_timestamp(expected)}mp_/{history}"


def test_timegate_honours_accept_datetime(client: FlaskClient, history: str) -> None:
    response = client.get(f"/web/{history}",
                          headers={"Accept-Datetime": "Thu, 01 Mar 2012 12:00:00 GMT"})
    assert response.status_code == 302
    assert response.headers["Location"] == f"/web/20120301090000/{history}"
    assert response.headers["Vary"] == "accept-datetime"
    assert f'<{history}>; rel="original"' in response.headers["Link"]
    assert 'rel="timemap"' in response.headers["Link"]
    latest = client.get(f"/web/{history}")
    assert latest.headers["Location"] == f"/web/20200105120000/{history}"
    bad = client.get(f"/web/{history}", headers={"Accept-Datetime": "yesterday"})
    assert bad.status_code == 400


def test_mementos_carry_memento_headers(client: FlaskClient, history: str) -> None:
    response = client.get(f"/web/20120301090000mp_/{history}")
    assert response.status_code == 200
    assert response.headers["Memento-Datetime"] == "Thu, 01 Mar 2012 09:00:00 GMT"
    link = response.headers["Link"]
    assert f'<{history}>; rel="original"' in link
    assert f'</web/{history}>; rel="timegate"' in link
    assert (f'</web/20080614183000/{history}>; rel="first prev memento"; '
            f'datetime="Sat, 14 Jun 2008 18:30:00 GMT"') in link
    assert f'</web/20200105120000/{history}>; rel="last next memento"' in link


def test_timemaps(client: FlaskClient, history: str) -> None:
    response = client.get(f"/timemap/link/{history}")
    assert response.status_code == 200
    assert response.content_type == "application/link-format"
    lines = response.get_data(as_text=True).strip().split(",\n")
    assert lines[0] == f'<{history}>; rel="original"'
    assert lines[1] == (f'</timemap/link/{history}>; rel="self"; type="application/link-format"'
                        '; from="Sat, 14 Jun 2008 18:30:00 GMT"'
                        '; until="Sun, 05 Jan 2020 12:00:00 GMT"')
    assert lines[2] == f'</web/{history}>; rel="timegate"'
    assert [re.search(r'rel="([^"]+)"', line).group(1) for line in lines[3:]] == [  # type: ignore[union-attr]
        "first memento", "memento", "last memento"]
    data = client.get(f"/timemap/json/{history}").get_json()
    assert [m["datetime"] for m in data["mementos"]["list"]] == [
        "2008-06-14T18:30:00Z", "2012-03-01T09:00:00Z", "2020-01-05T12:00:00Z"]
    assert data["timegate_uri"] == f"/web/{history}"
    assert client.get("/timemap/link/http://never.example/").status_code == 404


def test_rfc_7089_date_format() -> None:
    """RFC 7089's examples use RFC 1123 dates in GMT."""
    moment = parse_accept_datetime("Tue, 11 Sep 2001 20:35:00 GMT")
    assert moment == datetime(2001, 9, 11, 20, 35)
    assert http_date(moment) == "Tue, 11 Sep 2001 20:35:00 GMT"
    with pytest.raises(ValueError):
        parse_accept_datetime("2001-09-11")

    class Row:
        def __init__(self, at: datetime) -> None:
            self.captured_at = at

    text = timemap_link("http://a.example.org", [Row(moment)], "http://arxiv.example.net")
    assert 'rel="first last memento"; datetime="Tue, 11 Sep 2001 20:35:00 GMT"' in text


@pytest.mark.parametrize("when", ["Fri, 31 Dec 9999 23:59:59 -1200",
                                  "Fri, 31 Dec 9999 23:00:00 -0100"])
def test_accept_datetime_past_the_end_of_the_calendar_is_a_400(
        quiet_app: Flask, history: str, when: str) -> None:
    """A well-formed date whose GMT form lies past year 9999 (it was an OverflowError, 500)."""
    with pytest.raises(ValueError):
        parse_accept_datetime(when)
    answer = quiet_app.test_client().get(f"/web/{history}", headers={"Accept-Datetime": when})
    assert answer.status_code == 400


@pytest.mark.parametrize("when", ["Tue, 11 Sep 2001 20:35:00 -0000", "Tue, 11 Sep 2001",
                                  "Tue, 32 Sep 2001 20:35:00 GMT", "\x7f"])
def test_malformed_accept_datetime_is_a_400(quiet_app: Flask, history: str,
                                            when: str) -> None:
    answer = quiet_app.test_client().get(f"/web/{history}", headers={"Accept-Datetime": when})
    assert answer.status_code == 400


def test_head_of_replay_answers_headers_without_a_body(client: FlaskClient,
                                                       history: str) -> None:
    gate = client.head(f"/web/{history}")
    assert gate.status_code == 302 and gate.headers["Vary"] == "accept-datetime"
    document = client.head(gate.headers["Location"].replace("/http", "mp_/http", 1))
    assert document.status_code == 200 and document.data == b""
    assert document.headers["Content-Length"] == str(len(b"<p>article</p>"))
    assert document.headers["Content-Security-Policy"].startswith("sandbox;")
    assert "Memento-Datetime" in document.headers


def test_frame_banner(client: FlaskClient, history: str) -> None:
    html = client.get(f"/web/20120301090000/{history}").get_data(as_text=True)
    assert "Archived copy" in html and history in html
    assert "01 March 2012" in html
    assert f'href="/web/20080614183000/{history}" rel="prev"' in html
    assert f'href="/web/20200105120000/{history}" rel="next"' in html
    assert html.count('class="year"') == 3  # the calendar of all captures
    assert f'src="/web/20120301090000mp_/{history}"' in html
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in html
    assert "state-pending" in html  # the live link's current state
    # A link followed inside the iframe gets the bare document, not a frame in a frame.
    inner = client.get(f"/web/20120301090000/{history}", headers={"Sec-Fetch-Dest": "iframe"})
    assert inner.get_data(as_text=True) == "<p>article</p>"


@pytest.mark.parametrize("extra", ["utm_source=feed&utm_medium=rss", "_=1700000000123",
                                   "fbclid=IwAR0abc", "gclid=xyz&utm_campaign=x"])
def test_fuzzy_matching_of_tracking_and_cache_busting(client: FlaskClient, history: str,
                                                      extra: str) -> None:
    response = client.get(f"/web/2012mp_/{history}?{extra}")
    assert response.status_code == 302
    target = client.get(response.headers["Location"])
    assert target.status_code == 200 and target.data == b"<p>article</p>"


def test_a_very_long_address_is_not_archived(client: FlaskClient, history: str) -> None:
    """A 60,000-character address (waitress takes request heads up to 256 KB): the fuzzy
    lookup's LIKE pattern exceeded SQLite's 50,000-byte limit, a 500; it is "not archived"."""
    long_url = history + "/" + "a" * 60_000
    for path in (f"/web/{long_url}", f"/web/2012/{long_url}", f"/timemap/link/{long_url}"):
        assert client.get(path).status_code == 404, path[:40]


def test_a_long_address_with_a_tracking_parameter_is_still_found_fuzzily(
        archive: Archive, site: Site, client: FlaskClient) -> None:
    """The fuzzy LIKE is skipped only above MAX_URL_LENGTH (8192): a link just under it, asked
    for with utm_source added, is still matched to its capture."""
    path = "/a/" + "x" * 8000
    site.page(path, "<p>long</p>")
    url = site.url(path)
    assert capture_link(archive, add_link(archive, url)) == "archived"
    gate = client.get(f"/web/{url}?utm_source=feed")
    assert gate.status_code == 302, gate.status_code
    document = client.get(gate.headers["Location"].replace("/http", "mp_/http", 1))
    assert (document.status_code, document.data) == (200, b"<p>long</p>")


def test_fuzzy_matching_keeps_meaningful_parameters() -> None:
    assert fuzzy_url("https://v.org/watch?v=abc&utm_source=x") == "https://v.org/watch?v=abc"
    assert fuzzy_url("https://a.org/p?id=7&t=1700000000") == "https://a.org/p?id=7"
    assert fuzzy_url("https://a.org/p?t=10s") == "https://a.org/p?t=10s"  # not a cache buster


def test_identity_mode_serves_the_bytes_unrewritten(client: FlaskClient, archive: Archive,
                                                    site: Site) -> None:
    site.page("/linky", '<a href="/x">x</a>')
    url = site.url("/linky")
    link_id = add_link(archive, url)
    capture_link(archive, link_id)
    stamp = client.get(f"/web/{url}").headers["Location"].split("/")[2]
    assert client.get(f"/web/{stamp}id_/{url}").data == b'<a href="/x">x</a>'
    assert b"/web/" in client.get(f"/web/{stamp}mp_/{url}").data


@pytest.fixture
def split_app(archive: Archive) -> Flask:
    settings = archive.settings.replace(web__replay_origin="http://replay.test")
    app = create_app(settings, archive)
    app.config["TESTING"] = True
    return app


def test_separate_replay_origin(split_app: Flask, history: str) -> None:
    ui = split_app.test_client()
    frame = ui.get(f"/web/20120301090000/{history}", base_url="http://archive.test")
    assert f'src="http://replay.test/web/20120301090000mp_/{history}"' in frame.get_data(True)
    assert "frame-src 'self' http://replay.test" in frame.headers["Content-Security-Policy"]
    moved = ui.get(f"/web/20120301090000mp_/{history}", base_url="http://archive.test")
    assert moved.status_code == 302
    assert moved.headers["Location"] == f"http://replay.test/web/20120301090000mp_/{history}"
    document = ui.get(f"/web/20120301090000mp_/{history}", base_url="http://replay.test")
    assert document.status_code == 200 and document.data == b"<p>article</p>"
    assert "default-src http://replay.test " in document.headers["Content-Security-Policy"]
    for path in ("/", "/links", "/api/links", "/login"):  # no UI on the replay origin
        assert ui.get(path, base_url="http://replay.test").status_code == 404
    assert ui.get("/", base_url="http://archive.test").status_code == 200


def test_the_replay_origin_redirect_keeps_an_encoded_question_mark(split_app: Flask) -> None:
    """A '?' the server decoded from %3F in the path is no query: the redirect to the replay
    origin sends it encoded again, and the request's own query after it."""
    ui = split_app.test_client()
    path = "/web/20120301090000mp_/http://a.example/Baby_Jane%3F/100%25"
    moved = ui.get(f"{path}?q=1", base_url="http://archive.test")
    assert moved.headers["Location"] == f"http://replay.test{path}?q=1"
    moved = ui.get(path, base_url="http://archive.test")
    assert moved.headers["Location"] == f"http://replay.test{path}"


def test_scripts_setting(archive: Archive, history: str) -> None:
    app = create_app(archive.settings.replace(web__replay_scripts=True), archive)
    client = app.test_client()
    document = client.get(f"/web/20120301090000mp_/{history}")
    assert document.headers["Content-Security-Policy"].startswith("sandbox allow-scripts;")
    assert "allow-same-origin" not in document.headers["Content-Security-Policy"]
    frame = client.get(f"/web/20120301090000/{history}").get_data(as_text=True)
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox allow-scripts"' in frame


def test_dates_are_days_apart() -> None:
    assert DAYS[1] - DAYS[0] > timedelta(days=365)


def test_resources_are_served_bare_and_readable_cross_origin(client: FlaskClient,
                                                             archive: Archive,
                                                             site: Site) -> None:
    """Images behind redirects, and fonts loaded by a sandboxed (opaque origin) page."""

    site.redirect("/old.png", "/new.png", 301)
    site.page("/new.png", PNG, content_type="image/png")
    site.page("/font.woff2", b"wOF2" + bytes(20), content_type="font/woff2")
    site.page("/p", '<img src="/old.png"><style>@font-face{src:url(/font.woff2)}</style>'
              '<base href="/elsewhere/">')
    url = site.url("/p")
    link_id = add_link(archive, url)
    capture_link(archive, link_id)
    assert site.hits.get("/elsewhere/") is None  # a <base> is not a requisite
    stamp = client.get(f"/web/{url}").headers["Location"].split("/")[2]
    moved = client.get(f"/web/{stamp}mp_/{site.url('/old.png')}")
    assert moved.status_code == 301
    assert moved.headers["Location"] == f"/web/{stamp}mp_/{site.url('/new.png')}"
    image = client.get(f"/web/{stamp}/{site.url('/new.png')}",
                       headers={"Sec-Fetch-Dest": "image"})
    assert image.data == PNG  # not the banner page
    font = client.get(f"/web/{stamp}mp_/{site.url('/font.woff2')}")
    assert font.headers["Access-Control-Allow-Origin"] == "*"


def test_an_archived_redirect_to_a_raw_utf8_location_replays_to_its_target(
        archive: Archive, client: FlaskClient) -> None:
    """A site redirects with ``Location: /wiki/Советская`` in raw UTF-8: the capture follows
    it as browsers do, to /wiki/%D0%A1..., and the archived 301 must lead there (its Location
    was stored percent-encoded from its Latin-1 reading, another address)."""
    site = captured_redirect(archive, CYRILLIC_ROUTE.encode())
    url = site.url("/moved")
    stamp = client.get(f"/web/{url}").headers["Location"].split("/")[2]
    moved = client.get(f"/web/{stamp}mp_/{url}")
    assert moved.status_code == 301
    assert moved.headers["Location"] == f"/web/{stamp}mp_/{site.url(CYRILLIC_PATH)}"
    target = redirected_to(client, moved.headers["Location"])
    assert target.status_code == 200
    assert target.data == b"<p>target</p>"


def captured_redirect(archive: Archive, location: bytes) -> RawSite:
    """A site whose /moved answers 301 with ``location`` as its raw Location bytes (anything
    else: ``<p>target</p>``), captured from /moved; the site is closed, its URLs still good."""
    def answer(_method: str, path: str) -> bytes:
        if path == "/moved":
            return response(b"301 Moved Permanently", b"Location: " + location + b"\r\n")
        return response(b"200 OK", body=b"<p>target</p>")

    site = RawSite(answer)
    try:
        assert capture_link(archive, add_link(archive, site.url("/moved"))) == "archived"
    finally:
        site.close()
    return site


def redirected_to(client: FlaskClient, location: str) -> TestResponse:
    """The archived answer at ``location``, through the 302 to its capture's exact time."""
    target = client.get(location)
    if target.status_code == 302:
        target = client.get(target.headers["Location"])
    return target


@pytest.mark.parametrize("location", [b"/caf\xe9", "/wiki/Köln?q=Köln".encode(), b"/a b?x=1 2",
                                      b"/p?q=%E9", b"/a\tb", "/x?q=д#frag".encode()])
def test_an_archived_redirect_with_an_odd_location_leads_to_its_capture(
        archive: Archive, client: FlaskClient, location: bytes) -> None:
    """Whatever bytes a Location held, the archived redirect leads to the target the capture
    fetched (raw Latin-1, raw UTF-8 in the path and query, spaces, a tab)."""
    url = captured_redirect(archive, location).url("/moved")
    moved = client.get(f"/web/{stamp_of(client, url)}mp_/{url}")
    assert moved.status_code == 301
    target = redirected_to(client, moved.headers["Location"])
    assert (target.status_code, target.data) == (200, b"<p>target</p>")


@pytest.mark.parametrize("head", [
    b"Content-Type:text/html;charset=windows-1251\r\n",  # no spaces
    b"Content-Type: text/html;\r\n charset=windows-1251\r\n",  # folded (obs-fold)
    b'content-type: TEXT/HTML; charset="windows-1251"\r\n',
    b"Content-Type: text/html; charset=windows-1251\r\nX-Lat: caf\xe9\r\nX-Nul: a\x00b\r\n",
    # a raw Latin-1 byte; a NUL in a value (http.client drops what follows a NUL in a name)
])
def test_odd_archived_heads_replay_rewritten_in_their_charset(
        archive: Archive, client: FlaskClient, head: bytes) -> None:
    """A head stored as it came (no spaces, folded, quoted, odd bytes in other headers): the
    page is rewritten in its charset and says it, and no header goes out with a NUL."""
    body = "<p>Привет</p><a href='/x'>x</a>".encode("cp1251")

    def answer(_method: str, _path: str) -> bytes:
        return (b"HTTP/1.1 200 OK\r\nConnection: close\r\n" + head
                + b"Content-Length: %d\r\n\r\n" % len(body) + body)

    raw = RawSite(answer)
    try:
        url = raw.url("/p")
        assert capture_link(archive, add_link(archive, url)) == "archived"
    finally:
        raw.close()
    page = client.get(f"/web/{stamp_of(client, url)}mp_/{url}")
    assert page.status_code == 200
    assert "windows-1251" in page.headers["Content-Type"].lower()
    assert b"/web/" in page.data and "Привет".encode("cp1251") in page.data
    assert not any("\x00" in name + value for name, value in page.headers.items())
    if b"X-Lat" in head:
        assert page.headers["X-Archive-Orig-X-Lat"] == "caf%C3%A9"


def test_cached_memento_still_names_newer_captures(client: FlaskClient, archive: Archive,
                                                   history: str) -> None:
    """The rendered document is cached; the Link header (its neighbours) is made per request."""
    path = f"/web/20120301090000mp_/{history}"
    first = client.get(path)
    cache = client.application.extensions["replay_cache"]
    assert len(cache) == 1
    with archive.db.session() as session:
        link_id = session.scalar(select(Link.id).where(Link.url == history))
    assert link_id is not None
    capture_link(archive, link_id)  # a fourth capture, today
    again = client.get(path)
    assert cache.hits == 1
    assert again.data == first.data
    assert again.headers["Memento-Datetime"] == first.headers["Memento-Datetime"]
    latest = client.get(f"/web/{history}").headers["Location"].split("/")[2]
    assert latest not in first.headers["Link"]
    assert f"/web/{latest}/{history}>; rel=\"last memento\"" in again.headers["Link"]


def test_cache_keys_on_the_answering_origin(client: FlaskClient, history: str) -> None:
    path = f"/web/20120301090000mp_/{history}"
    one = client.get(path, base_url="http://one.test")
    two = client.get(path, base_url="http://two.test")
    assert "default-src http://one.test " in one.headers["Content-Security-Policy"]
    assert "default-src http://two.test " in two.headers["Content-Security-Policy"]


def test_cache_can_be_turned_off(archive: Archive, history: str) -> None:
    app = create_app(archive.settings.replace(web__replay_cache_bytes=0), archive)
    client = app.test_client()
    for _ in range(2):
        assert client.get(f"/web/20120301090000mp_/{history}").data == b"<p>article</p>"
    assert len(app.extensions["replay_cache"]) == 0


def test_render_cache_is_bounded_by_bytes() -> None:
    cache = RenderCache(max_bytes=10_000)
    for n in range(40):
        cache.put(n, ArchivedResponse(200, (("Content-Type", "text/html"),), b"x" * 900))
        cache.get(0)  # kept in use: never the least recently used
    assert cache.held <= 10_000
    assert cache.get(0) is not None and cache.get(1) is None and cache.get(39) is not None
    cache.put("big", ArchivedResponse(200, (), b"x" * 2_000))  # over an eighth: not kept
    assert cache.get("big") is None


def test_requisites_get_the_nearest_capture_without_a_redirect(client: FlaskClient,
                                                              history: str) -> None:
    """An image asked for at its page's time (seconds before its own capture) is answered at
    once; a page asked for at an inexact time still goes to its exact address."""
    image = client.get(f"/web/2012mp_/{history}", headers={"Sec-Fetch-Dest": "image"})
    assert image.status_code == 200 and image.data == b"<p>article</p>"
    assert image.headers["Content-Location"] == f"/web/20120301090000mp_/{history}"
    assert image.headers["Memento-Datetime"] == "Thu, 01 Mar 2012 09:00:00 GMT"
    for destination in ("document", "iframe", "empty"):
        page = client.get(f"/web/2012mp_/{history}", headers={"Sec-Fetch-Dest": destination})
        assert page.status_code == 302, destination
    exact = client.get(f"/web/20120301090000mp_/{history}", headers={"Sec-Fetch-Dest": "image"})
    assert "Content-Location" not in exact.headers


# -- what the production server (waitress) can send --------------------------------------------

@pytest.fixture
def quiet_app(archive: Archive) -> Flask:
    """The app as it runs in production: an exception is a 500 page, not raised to the test."""
    app = create_app(archive.settings, archive)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    return app


@contextlib.contextmanager
def waitress_serving(app: Flask) -> Iterator[int]:
    """``app`` served by waitress (as ``archiver serve`` and ``archiver web`` run it) on a free
    loopback port; yields the port. Headers it cannot send (not Latin-1) are a 500 there."""
    from waitress import create_server

    server = create_server(app, host="127.0.0.1", port=0, threads=2)

    def run() -> None:
        with contextlib.suppress(OSError):  # its socket closed under it at the end
            server.run()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield int(server.effective_port)  # type: ignore[union-attr]
    finally:
        server.task_dispatcher.shutdown()
        server.close()
        thread.join(5)


def fetch(port: int, path: str, headers: dict[str, str] | None = None,
          ) -> tuple[int, dict[str, str], bytes]:
    """One GET over a real socket: status, headers, body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, dict(answer.getheaders()), answer.read()
    finally:
        conn.close()


def test_an_archived_page_with_a_cyrillic_address_opens(archive: Archive, site: Site,
                                                       quiet_app: Flask) -> None:
    """A reference to a Russian Wikipedia article: its TimeGate, frame and document carry a
    Link header built from the decoded request path, which must go out percent-encoded (a
    WSGI server sends headers as Latin-1: raw Cyrillic was a 500 under waitress)."""
    site.page(CYRILLIC_ROUTE, "<p>статья</p>")
    url = canonicalize(site.url(CYRILLIC_PATH))
    capture_link(archive, add_link(archive, url))
    with waitress_serving(quiet_app) as port:
        status, headers, _ = fetch(port, f"/web/{url}")  # the TimeGate
        assert status == 302, status
        assert f"<{url}>; rel=\"original\"" in headers["Link"]
        location = headers["Location"]
        status, headers, _ = fetch(port, location)  # the frame page
        assert status == 200, status
        assert f"<{url}>; rel=\"original\"" in headers["Link"]
        status, headers, body = fetch(port, location.replace("/http", "mp_/http", 1))
        assert status == 200, status
        assert body.decode() == "<p>статья</p>"
        assert f"<{url}>; rel=\"original\"" in headers["Link"]


def test_an_address_with_a_latin1_escape_in_its_path_opens(
        archive: Archive, client: FlaskClient, quiet_app: Flask) -> None:
    """Old sites spell 'café' as /caf%E9. The capture fetches it as is, and the link's page
    offers its archived copy at /web/<ts>/http://host/caf%E9; the server decodes the path as
    UTF-8 ('caf\\ufffd'), so replay reads the address from the raw request (REQUEST_URI)."""
    def answer(_method: str, path: str) -> bytes:
        return response(b"200 OK", body=f"<p>{path}</p>".encode())

    raw = RawSite(answer)
    try:
        url = raw.url("/caf%E9")
        link_id = add_link(archive, url)
        assert capture_link(archive, link_id) == "archived"
    finally:
        raw.close()
    href = archived_link_href(client, link_id)
    assert href.endswith("/caf%E9"), href
    document = href.replace("/http", "mp_/http", 1)
    with waitress_serving(quiet_app) as port:
        status, headers, _ = fetch(port, href)
        assert status == 200, status
        assert f'<{url}>; rel="original"' in headers["Link"]
        status, _, body = fetch(port, document)
        assert status == 200 and body == b"<p>/caf%E9</p>", (status, body)
        status, headers, _ = fetch(port, f"/web/{url}")  # the TimeGate
        assert (status, headers["Location"]) == (302, href), (status, headers)
    assert client.get(document).data == b"<p>/caf%E9</p>"  # werkzeug passes it too


def test_the_replay_origin_redirect_keeps_a_latin1_escape(split_app: Flask) -> None:
    path = "/web/20120301090000mp_/http://a.example/caf%E9"
    moved = split_app.test_client().get(path, base_url="http://archive.test")
    assert moved.headers["Location"] == f"http://replay.test{path}"


def test_timemap_uris_are_percent_encoded(archive: Archive, site: Site,
                                          client: FlaskClient) -> None:
    """application/link-format (RFC 6690) and RFC 8288 carry URI-References between < and >:
    ASCII, with '>' encoded; the TimeMap of a decoded request path is written so."""
    site.page(CYRILLIC_ROUTE, "<p>статья</p>")
    url = canonicalize(site.url(CYRILLIC_PATH))
    capture_link(archive, add_link(archive, url))
    text = client.get(f"/timemap/link/{url}").get_data(as_text=True)
    assert text.isascii(), text.splitlines()[0]
    assert f"<{url}>; rel=\"original\"" in text
    data = client.get(f"/timemap/json/{url}").get_json()
    assert data["original_uri"] == url and data["mementos"]["list"][0]["uri"].endswith(url)


def test_the_link_header_names_an_idn_host_by_its_a_label(client: FlaskClient) -> None:
    """The TimeGate of http://bücher.example/ says rel="original" is the URI
    http://xn--bcher-kva.example/, not http://b%C3%BCcher.example/, a host no resolver
    outside a browser finds."""
    gate = client.get("/web/http://bücher.example/buch")
    assert gate.status_code == 404
    link = gate.headers["Link"]
    assert link.startswith('<http://xn--bcher-kva.example/buch>; rel="original"'), link


@pytest.mark.parametrize(("iri", "uri"), [
    ("http://k.example/Köln", "http://k.example/K%C3%B6ln"),  # Latin-1: sent, but as 0xF6
    ("http://a.example/a>b <c>", "http://a.example/a%3Eb%20%3Cc%3E"),
    ("http://a.example/%3F?q=1&r=%20", "http://a.example/%3F?q=1&r=%20"),  # a URI stays one
    # a host by its IDNA A-label (RFC 3986 3.2.2), as the archive's own key names it
    ("http://Bücher.example:8080/Bücher", "http://xn--bcher-kva.example:8080/B%C3%BCcher"),
    ("http://bü_x.example/", "http://b%C3%BC_x.example/"),  # none: percent-encoded
])
def test_link_header_and_timemap_hold_uris(iri: str, uri: str) -> None:
    link = link_header(iri, [], None)
    assert link.isascii() and link.startswith(f'<{uri}>; rel="original", </web/{uri}>')
    assert timemap_link(iri, []).startswith(f'<{uri}>; rel="original",\n')
