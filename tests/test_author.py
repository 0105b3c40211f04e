"""The author's side of the web UI: login, CSRF, rate limiting, actions and the dashboard."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.wrappers import Response

from archiver import actions
from archiver.archive import Archive
from archiver.cli import cli
from archiver.clock import utcnow
from archiver.demo.fixtureweb import Site
from archiver.history import snapshot_state_counts
from archiver.jobs import WorkKind, check_round, run_due
from archiver.models import (
    AuthorSession,
    Check,
    Citation,
    Link,
    LinkState,
    LoginAttempt,
    Post,
    Source,
    link_is_ignored,
)
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


def logged_in(client: FlaskClient) -> bool:
    """Whether the UI treats ``client`` as the author (its pages offer to log out)."""
    return "Log out" in client.get("/").get_data(True)


def copy_session(source: FlaskClient, target: FlaskClient) -> None:
    """Give ``target`` the session cookie of ``source``, as a thief who copied it would."""
    cookie = source.get_cookie("session")
    assert cookie is not None
    target.set_cookie("session", cookie.value)


def app_with(archive: Archive, **overrides: object) -> Flask:
    """The author's app over ``archive``'s database with further settings."""
    settings = archive.settings.replace(
        web__admin_password_hash=generate_password_hash(PASSWORD), web__login_attempts=3,
        **overrides)
    app = create_app(settings, archive)
    app.config["TESTING"] = True
    return app


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


def test_refused_attempts_do_not_prolong_the_lockout(author_app: Flask,
                                                     browser: FlaskClient) -> None:
    """Posting on while locked out must not keep the address locked for ever (the author's,
    behind a shared proxy), nor write a row per post."""
    for _ in range(10):
        browser.post("/login", data={"password": "nope", "csrf_token": token(browser)})
    archive = author_app.extensions["archive"]
    with archive.db.session() as session:
        assert session.scalar(select(func.count()).select_from(LoginAttempt)) == 3


def test_a_copied_session_cookie_dies_at_logout(author_app: Flask,
                                                 browser: FlaskClient) -> None:
    log_in(browser)
    thief = author_app.test_client()
    copy_session(browser, thief)
    assert logged_in(browser) and logged_in(thief)
    response = browser.post("/logout", data={"csrf_token": token(browser, "/")})
    assert response.status_code == 302
    assert not logged_in(browser)
    assert not logged_in(thief)  # the login itself ended, not just the browser's cookie


def test_a_login_ends_after_the_session_lifetime(archive: Archive) -> None:
    browser = app_with(archive, web__session_lifetime="1s").test_client()
    log_in(browser)
    assert logged_in(browser)
    time.sleep(1.2)
    assert not logged_in(browser)
    log_in(browser)  # a new login works, and clears the expired one away
    with archive.db.session() as session:
        assert session.scalar(select(func.count()).select_from(AuthorSession)) == 1


def test_the_session_lifetime_is_stored_with_the_login(browser: FlaskClient,
                                                       archive: Archive) -> None:
    log_in(browser)
    with archive.db.session() as session:
        login = session.scalars(select(AuthorSession)).one()
        assert login.expires_at - login.created_at == timedelta(hours=12)  # the default
        login.expires_at = utcnow() - timedelta(seconds=1)
    assert not logged_in(browser)


def test_secure_cookies_setting(archive: Archive) -> None:
    for secure in (False, True):
        browser = app_with(archive, web__secure_cookies=secure).test_client()
        response = browser.post("/login", data={"password": PASSWORD,
                                                "csrf_token": token(browser)})
        assert ("; Secure" in response.headers["Set-Cookie"]) is secure


def test_parallel_wrong_passwords_get_no_more_checks_than_allowed(author_app: Flask) -> None:
    """Web.login_attempts=3: of 20 simultaneous wrong passwords at most 3 are checked."""
    tries = 20
    start = threading.Barrier(tries)

    def attempt(_: int) -> int:
        client = author_app.test_client()
        csrf = token(client)
        start.wait()
        return client.post("/login", data={"password": "nope", "csrf_token": csrf}).status_code

    with ThreadPoolExecutor(tries) as pool:
        statuses = list(pool.map(attempt, range(tries)))
    assert statuses.count(401) <= 3
    assert statuses.count(429) == tries - statuses.count(401)


def test_two_web_processes_share_the_limit_and_the_logins(author_app: Flask,
                                                          archive: Archive) -> None:
    with Archive.open(archive.settings) as other_archive:
        other_app = create_app(author_app.extensions["settings"], other_archive)
        other_app.config["TESTING"] = True
        first, second = author_app.test_client(), other_app.test_client()
        log_in(first)
        copy_session(first, second)
        assert logged_in(second)
        second.post("/logout", data={"csrf_token": token(second, "/")})
        assert not logged_in(first)  # logged out in the other process: out here too

        for client in (first, second, first):
            response = client.post("/login", data={"password": "nope",
                                                   "csrf_token": token(client)})
            assert response.status_code == 401
        response = second.post("/login", data={"password": PASSWORD,
                                               "csrf_token": token(second)})
        assert response.status_code == 429


def test_right_passwords_use_no_attempts_and_old_failures_age_out(browser: FlaskClient,
                                                                  archive: Archive) -> None:
    for _ in range(5):  # more than web.login_attempts
        log_in(browser)
    with archive.db.session() as session:
        long_ago = utcnow() - timedelta(minutes=16)
        session.add_all([LoginAttempt(address="127.0.0.1", attempted_at=long_ago)
                         for _ in range(3)])
    response = browser.post("/login", data={"password": "nope", "csrf_token": token(browser)})
    assert response.status_code == 401
    with archive.db.session() as session:  # the old ones were removed; the failure is kept
        assert session.scalar(select(func.count()).select_from(LoginAttempt)) == 1


@pytest.mark.parametrize("target", [
    "/%09/evil.example/", "/%0d%0a", "//evil.example", "/%5Cevil.example", "/%5C/evil.example",
    "https://evil.example/", "javascript:alert(1)", "evil.example", "",
])
def test_login_never_redirects_off_the_site(browser: FlaskClient, target: str) -> None:
    response = browser.post(f"/login?next={target}",
                            data={"password": PASSWORD, "csrf_token": token(browser)})
    assert (response.status_code, response.headers["Location"]) == (302, "/")
    assert logged_in(browser)


def test_login_returns_to_the_page_asked_for(browser: FlaskClient) -> None:
    response = browser.post("/login?next=/links%3Fstate%3Ddead",
                            data={"password": PASSWORD, "csrf_token": token(browser)})
    assert response.headers["Location"] == "/links?state=dead"


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


@pytest.mark.parametrize("hops", [0, 1])
def test_behind_a_proxy_each_client_has_its_own_login_limit(archive: Archive, hops: int) -> None:
    """Behind nginx every request comes from the proxy's address: without web.proxy_hops
    anyone's wrong passwords lock the author out too; with it, X-Forwarded-For tells them
    apart (and without it, a forged header must change nothing)."""
    settings = archive.settings.replace(
        web__admin_password_hash=generate_password_hash(PASSWORD), web__login_attempts=3,
        web__proxy_hops=hops)
    app = create_app(settings, archive)
    app.config["TESTING"] = True
    attacker, author = app.test_client(), app.test_client()
    for client, address in ((attacker, "203.0.113.9"), (author, "198.51.100.7")):
        client.environ_base["HTTP_X_FORWARDED_FOR"] = address
    for _ in range(3):
        attacker.post("/login", data={"password": "nope", "csrf_token": token(attacker)})
    response = author.post("/login", data={"password": PASSWORD, "csrf_token": token(author)})
    assert response.status_code == (302 if hops else 429)


def test_recheck_of_a_hanging_site_answers_at_once_and_finishes_in_the_background(
        browser: FlaskClient, archive: Archive, site: Site,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A check of a server that does not answer may take minutes: the author's request comes
    back after RECHECK_WAIT with 'still checking', a second click starts no second check, and
    the verdict lands on the link's page when the site answers."""
    import web.views.actions as views

    monkeypatch.setattr(views, "RECHECK_WAIT", 0.5)
    answer = threading.Event()
    site.route("/slow", lambda _r: (answer.wait(30), Response("late but here"))[1])
    [link_id] = add_links(archive, [site.url("/slow")])
    log_in(browser)
    csrf = token(browser, f"/links/{link_id}")
    started = time.monotonic()
    first = browser.post(f"/links/{link_id}/recheck", data={"csrf_token": csrf},
                         follow_redirects=True).get_data(True)
    second = browser.post(f"/links/{link_id}/recheck", data={"csrf_token": csrf},
                          follow_redirects=True).get_data(True)
    assert time.monotonic() - started < 5
    assert "Still checking" in first and "already running" in second
    answer.set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and link_id in views._rechecking:
        time.sleep(0.05)
    with archive.db.session() as session:
        verdicts = session.scalars(select(Check.verdict).where(Check.link_id == link_id)).all()
    assert [str(v) for v in verdicts] == ["ok"]
    assert site.hits.get("/slow", 0) >= 1
