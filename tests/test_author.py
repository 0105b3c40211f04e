"""The author's side of the web UI: login, CSRF, rate limiting, actions and the dashboard."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from archiver import actions
from archiver.archive import Archive
from archiver.cli import cli
from archiver.clock import utcnow
from archiver.demo.fixtureweb import Site
from archiver.history import snapshot_state_counts
from archiver.jobs import WorkKind, check_round, run_due
from archiver.models import Citation, Link, LinkState, Post, Source, link_is_ignored
from archiver.urls import host_of, url_key
from tests.test_jobs import add_links
from web import create_app

PASSWORD = "correct horse battery"


@pytest.fixture
def author_app(archive: Archive) -> Flask:
    settings = archive.settings.replace(
        web__admin_password_hash=generate_password_hash(PASSWORD), web__login_attempts=3)
    app = create_app(settings, archive)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def browser(author_app: Flask) -> FlaskClient:
    return author_app.test_client()


def token(client: FlaskClient, path: str = "/login") -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(True))
    assert match, "page has no CSRF token"
    return match.group(1)


def log_in(client: FlaskClient) -> None:
    response = client.post("/login", data={"password": PASSWORD, "csrf_token": token(client)})
    assert response.status_code == 302


@pytest.fixture
def soft_404_link(archive: Archive, site: Site) -> Iterator[int]:
    """A link the checker calls failing although the author knows better."""
    site.page("/gone", "no", status=404)
    url = site.url("/gone")
    with archive.db.session() as session:
        source = Source(kind="folder", location="/posts")
        session.add(source)
        session.flush()
        post = Post(source_id=source.id, url="https://blog.example/p", content_hash="x",
                    title="P")
        link = Link(url=url, url_key=url_key(url), host=host_of(url), next_check_at=utcnow())
        session.add_all([post, link])
        session.flush()
        session.add(Citation(post_id=post.id, link_id=link.id, href=url, element="a"))
        link_id = link.id
    run_due(archive, WorkKind.CHECK)
    yield link_id


def test_login_sets_a_strict_httponly_session(browser: FlaskClient) -> None:
    response = browser.post("/login", data={"password": PASSWORD,
                                            "csrf_token": token(browser)})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_wrong_password_and_rate_limit(browser: FlaskClient) -> None:
    for _ in range(3):
        response = browser.post("/login", data={"password": "nope",
                                                "csrf_token": token(browser)})
        assert response.status_code == 401
    response = browser.post("/login", data={"password": PASSWORD,
                                            "csrf_token": token(browser)})
    assert response.status_code == 429  # even the right password waits now


def test_posts_without_csrf_token_are_refused(browser: FlaskClient, soft_404_link: int) -> None:
    assert browser.post("/login", data={"password": PASSWORD}).status_code == 400
    log_in(browser)
    response = browser.post(f"/links/{soft_404_link}/not-broken")
    assert response.status_code == 400
    response = browser.post(f"/links/{soft_404_link}/not-broken",
                            data={"csrf_token": "forged"})
    assert response.status_code == 400


def test_actions_need_login(browser: FlaskClient, soft_404_link: int) -> None:
    csrf = token(browser)
    for path in (f"/links/{soft_404_link}/recheck", f"/links/{soft_404_link}/not-broken",
                 "/domains"):
        assert browser.post(path, data={"csrf_token": csrf, "domain": "x.org"}).status_code \
            == 403


def test_not_broken_sticks_until_the_answer_changes(browser: FlaskClient, archive: Archive,
                                                    site: Site, soft_404_link: int) -> None:
    log_in(browser)
    csrf = token(browser, f"/links/{soft_404_link}")
    assert browser.post(f"/links/{soft_404_link}/not-broken",
                        data={"csrf_token": csrf}).status_code == 302
    for _ in range(3):  # the same 404 again and again: the author's word holds
        assert browser.post(f"/links/{soft_404_link}/recheck",
                            data={"csrf_token": csrf}).status_code == 302
    with archive.db.session() as session:
        link = session.get(Link, soft_404_link)
        assert link is not None and link.state == LinkState.ALIVE
        assert link.last_verdict == "not_found"  # what the site said is still recorded
    site.page("/gone", "gone for good", status=410)  # the answer changes: checks decide again
    browser.post(f"/links/{soft_404_link}/recheck", data={"csrf_token": csrf})
    with archive.db.session() as session:
        link = session.get(Link, soft_404_link)
        assert link is not None
        assert (link.state, link.override_response) == (LinkState.FAILING, None)


def test_ignore_a_domain(browser: FlaskClient, archive: Archive, soft_404_link: int,
                         site: Site) -> None:
    log_in(browser)
    csrf = token(browser, "/domains")
    assert browser.post("/domains", data={"csrf_token": csrf,
                                          "domain": "not a domain!"}).status_code == 400
    browser.post("/domains", data={"csrf_token": csrf, "domain": "http://127.0.0.1/"})
    assert "127.0.0.1" in browser.get("/domains").get_data(True)
    assert browser.get("/api/links").get_json()["total"] == 0
    with archive.db.session() as session:
        link = session.get(Link, soft_404_link)
        assert link is not None
        link.next_check_at = utcnow()
    assert run_due(archive, WorkKind.CHECK).claimed == 0  # ignored links are not checked
    browser.post("/domains/127.0.0.1/delete", data={"csrf_token": csrf})
    assert browser.get("/api/links").get_json()["total"] == 1


def test_the_ignored_flag_follows_the_domains(archive: Archive) -> None:
    hosts = ["example.org", "www.example.org", "example.org:8080", "a.news.example.org",
             "news.example.org:8443", "example.org.evil.net", "notexample.org", "other.net"]
    before = add_links(archive, [f"http://{host}/old" for host in hosts])
    actions.ignore_domain(archive, "https://www.Example.org/some/page")
    actions.ignore_domain(archive, "news.example.org")
    after = add_links(archive, [f"http://{host}/new" for host in hosts])  # flagged on insert

    def ignored(ids: list[int]) -> list[str]:
        with archive.db.session() as session:
            return [link.host for link in session.scalars(
                select(Link).where(Link.id.in_(ids), link_is_ignored()).order_by(Link.id))]

    assert ignored(before) == ignored(after) == hosts[:5]
    actions.unignore_domain(archive, "example.org")  # news.example.org is still ignored
    assert ignored(before) == ignored(after) == hosts[3:5]
    actions.unignore_domain(archive, "news.example.org")
    assert ignored(before + after) == []


def test_dashboard_chart_and_worst_posts(browser: FlaskClient, archive: Archive,
                                         soft_404_link: int) -> None:
    with archive.db.session() as session:
        snapshot_state_counts(session, date(2026, 11, 20))
        snapshot_state_counts(session)
    check_round(archive)
    html = browser.get("/").get_data(True)
    assert html.count("<rect") >= 2
    assert "1 failing" in html
    assert 'href="/posts/1"' in html and "Posts with the most broken references" in html


def test_hash_password_command() -> None:
    result = CliRunner().invoke(cli, ["hash-password"], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0
    assert check_password_hash(result.stdout.strip().splitlines()[-1], PASSWORD)
    short = CliRunner().invoke(cli, ["hash-password"], input="short\nshort\n")
    assert short.exit_code == 2
