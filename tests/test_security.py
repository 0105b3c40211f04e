"""The web app's promises: every state-changing route needs login and CSRF, no route reads a
file outside its folders, hostile archived bodies cannot exhaust memory; and property tests:
URL canonicalisation and feed/sitemap parsing never raise anything but their own errors."""

from __future__ import annotations

import contextlib
import gzip
import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver.archive import Archive
from archiver.demo.fixtureweb import Site
from archiver.errors import SourceError
from archiver.jobs import capture_link
from archiver.models import Post, Source
from archiver.sources.common import parse_xml
from archiver.sources.feed import parse_feed
from archiver.urls import InvalidURL, canonicalize
from tests.conftest import make_settings
from tests.test_capture import add_link
from web import UI_SECURITY_HEADERS

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# Routes that change nothing on the server although they accept POST.
PUBLIC_POSTS = {"/login", "/api/refs"}
JS_LINK = re.compile(rb"""(?:href|src|action)\s*=\s*["']?\s*javascript:""", re.I)


def state_changing_routes(app: Flask) -> list[tuple[str, str]]:
    routes = []
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - SAFE_METHODS):
            path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", "1", rule.rule)
            if rule.rule not in PUBLIC_POSTS:
                routes.append((method, path))
    return routes


def test_every_state_changing_route_needs_login_and_csrf(app: Flask, client: FlaskClient) -> None:
    routes = state_changing_routes(app)
    assert len(routes) >= 6  # recheck, not broken, clear override, ignore, unignore, logout
    for method, path in routes:
        without_token = client.open(path, method=method)
        assert without_token.status_code == 400, (method, path)  # CSRF first
        with client.session_transaction() as session:
            session["csrf"] = "token"
        with_token = client.open(path, method=method, data={"csrf_token": "token"})
        if path != "/logout":
            assert with_token.status_code == 403, (method, path)  # then login


@pytest.mark.parametrize("path", [
    "/static/../../archiver/settings.py", "/static/..%2f..%2fpyproject.toml",
    "/static/%2e%2e/%2e%2e/README.md", "/web/20200101000000mp_/file:///etc/passwd",
    "/web/..%2f..%2f..%2fetc%2fpasswd", "/static//etc/passwd",
])
def test_no_route_reads_files_outside_its_folders(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code in {302, 400, 404}, path
    assert b"root:" not in response.data and b"[project]" not in response.data
    assert b"def load_settings" not in response.data


@pytest.mark.parametrize("path", [
    "/web/javascript:%2F%2Fx%250aalert(document.domain)",  # the TimeGate
    "/web/2020/javascript://x%250aalert(1)",  # the frame page
    "/web/2020mp_/javascript://x%250aalert(1)",  # the bare document
    "/timemap/link/javascript://x%250aalert(1)",
])
def test_replay_refuses_other_schemes_so_no_page_links_them(client: FlaskClient,
                                                            path: str) -> None:
    """A not-archived page linked the asked URL as "the live page": with ``javascript:``,
    one click ran script in the app's own origin, with the author's session."""
    response = client.get(path)
    assert response.status_code == 400
    assert not JS_LINK.search(response.data)
    assert response.headers["Content-Security-Policy"] == \
        UI_SECURITY_HEADERS["Content-Security-Policy"]


def test_answers_under_web_that_are_not_archived_documents_carry_the_ui_headers(
        client: FlaskClient) -> None:
    for path in ("/web/http://never.example/page", "/web/2020/http://never.example/page"):
        response = client.get(path)
        assert response.status_code == 404
        for name, value in UI_SECURITY_HEADERS.items():
            assert response.headers[name] == value, (path, name)
        assert b'href="http://never.example/page"' in response.data  # the live link stays


def test_a_stored_url_of_another_scheme_never_becomes_a_link(archive: Archive,
                                                            client: FlaskClient) -> None:
    with archive.db.session() as session:
        source = Source(kind="folder", location="/posts")
        session.add(source)
        session.flush()
        post = Post(source_id=source.id, url="javascript:alert(document.domain)",
                    content_hash="x", title="P")
        session.add(post)
        session.flush()
        post_id = post.id
    for path in (f"/posts/{post_id}", f"/posts/{post_id}/references"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert b"javascript:alert" in response.data  # shown as text
        assert not JS_LINK.search(response.data), path


def test_a_gzip_bomb_is_refused_at_replay(tmp_path: Path, site: Site) -> None:
    settings = make_settings(tmp_path / "d", fetch__max_body_bytes="1MB")
    from archiver.archive import initialise
    from web import create_app

    initialise(settings)
    bomb = gzip.compress(b"\0" * (20 * 1024 * 1024))  # 20 KB on the wire, 20 MB decoded
    site.page("/bomb", bomb, content_type="text/html", headers={"Content-Encoding": "gzip"})
    with Archive.open(settings) as archive:
        assert capture_link(archive, add_link(archive, site.url("/bomb"))) == "archived"
        client = create_app(settings, archive).test_client()
        response = client.get(f"/web/2id_/{site.url('/bomb')}", follow_redirects=True)
        assert response.status_code == 502
        assert b"larger than" in response.data


@given(st.text(max_size=300))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_canonicalize_never_raises_anything_else(text: str) -> None:
    try:
        url = canonicalize(text)
    except InvalidURL:
        return
    assert url.startswith(("http://", "https://"))
    assert canonicalize(url) == url  # canonical forms are fixed points


@given(st.builds(lambda scheme, host, path, query: f"{scheme}://{host}/{path}?{query}",
                 st.sampled_from(["http", "https", "HTTP", "hTTps"]),
                 st.from_regex(r"[A-Za-z0-9.-]{1,30}", fullmatch=True),
                 st.text(max_size=40), st.text(max_size=40)))
@settings(max_examples=300)
def test_canonicalize_on_url_shaped_input(text: str) -> None:
    try:
        url = canonicalize(text)
    except InvalidURL:
        return
    assert canonicalize(url) == url


XMLISH = st.recursive(
    st.text(alphabet="abc<>/&;=\"' \n", max_size=20),
    lambda inner: st.builds(lambda tag, body: f"<{tag}>{body}</{tag}>",
                            st.sampled_from(["rss", "channel", "item", "link", "urlset", "url",
                                             "loc", "feed", "entry", "!DOCTYPE x", "title"]),
                            inner),
    max_leaves=10)


@given(XMLISH)
@settings(max_examples=300)
def test_feed_parsing_never_raises_anything_else(text: str) -> None:
    with contextlib.suppress(SourceError):
        list(parse_feed(("<?xml version='1.0'?>" + text).encode(), "https://blog.example/feed"))


@given(XMLISH)
@settings(max_examples=300)
def test_xml_parsing_never_raises_anything_else(text: str) -> None:
    with contextlib.suppress(SourceError):
        parse_xml(text.encode(), "sitemap")
