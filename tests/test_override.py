"""The author's overrides: "not broken" holds exactly while the site's answer stays the one
they saw, undoing it restores what the checks said, and ignored domains match names, not
LIKE patterns (on SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select, text, update
from werkzeug.wrappers import Request, Response

from archiver import actions
from archiver.archive import Archive, initialise
from archiver.check import CheckOutcome
from archiver.cli import cli
from archiver.db import Database
from archiver.demo.fixtureweb import Site
from archiver.models import Link, LinkState, link_is_ignored
from archiver.report import links_query
from archiver.settings import Settings
from archiver.verdicts import Verdict
from tests.conftest import make_settings
from tests.pg import fresh_pg_url, pg_server  # noqa: F401
from tests.test_author import author_app, log_in, token  # noqa: F401
from tests.test_jobs import add_links

LONG_PATH = "/articles/" + "a-rather-long-slug-" * 4  # the final URL passes 64 characters


def link_of(archive: Archive, link_id: int) -> Link:
    """The link's row as stored now."""
    with archive.db.session() as session:
        link = session.get(Link, link_id)
        assert link is not None
        session.expunge(link)
        return link


def report(archive: Archive) -> tuple[int, dict[str, dict[str, object]]]:
    """``archiver report --format json --uncited``: its exit code and its rows by URL (the
    links these tests add are cited by no post)."""
    env = {"ARCHIVER_DATA_DIR": str(archive.settings.data_dir),
           "ARCHIVER_LOG_LEVEL": "WARNING"}
    result = CliRunner().invoke(cli, ["-q", "report", "--format", "json", "--uncited"],
                                env=env)
    return result.exit_code, {row["url"]: row for row in json.loads(result.stdout)}


def test_a_change_far_into_a_long_final_url_lifts_the_override(archive: Archive,
                                                                site: Site) -> None:
    site.redirect("/moved", LONG_PATH + "one", status=302)
    [link_id] = add_links(archive, [site.url("/moved")])
    assert actions.recheck(archive, link_id) == "not_found"
    actions.mark_not_broken(archive, link_id)
    assert actions.recheck(archive, link_id) == "not_found"
    assert link_of(archive, link_id).state == LinkState.ALIVE  # the same answer: it holds
    site.redirect("/moved", LONG_PATH + "two", status=302)  # now it lands elsewhere
    actions.recheck(archive, link_id)
    link = link_of(archive, link_id)
    assert (link.state, link.override_response) == (LinkState.FAILING, None)


def test_the_override_holds_when_only_the_redirect_query_varies(archive: Archive,
                                                                site: Site) -> None:
    """A login wall sends each request to ``/login?return=<random>``: the same answer."""

    def wall(_request: Request) -> Response:
        return Response("", status=302,
                        headers={"Location": site.url(f"/login?return={secrets.token_hex(8)}")})

    site.route("/paper", wall)
    site.page("/login", "log in first", status=403)
    [link_id] = add_links(archive, [site.url("/paper")])
    assert actions.recheck(archive, link_id) == "blocked"
    actions.mark_not_broken(archive, link_id)
    for _ in range(2):
        assert actions.recheck(archive, link_id) == "blocked"
        link = link_of(archive, link_id)
        assert link.state == LinkState.ALIVE and link.override_response is not None
    site.page("/login", "gone", status=410)  # a different answer lifts it
    actions.recheck(archive, link_id)
    assert link_of(archive, link_id).override_response is None


def legacy_key(verdict: str, status: int, final_url: str) -> str:
    """A response key as stored before keys were hashed."""
    return f"{verdict}|{status}|{final_url}"[:64]


def test_an_override_stored_in_the_old_key_format_still_holds(archive: Archive,
                                                              site: Site) -> None:
    site.page("/gone", "no", status=404)
    url = site.url("/gone")
    [link_id] = add_links(archive, [url])
    actions.recheck(archive, link_id)
    with archive.db.session() as session:  # as an override made before the upgrade
        session.execute(update(Link).where(Link.id == link_id).values(
            override_response=legacy_key("not_found", 404, url), state=LinkState.ALIVE))
    actions.recheck(archive, link_id)
    link = link_of(archive, link_id)
    assert link.state == LinkState.ALIVE
    assert link.override_response == CheckOutcome(Verdict.NOT_FOUND, 404, url).response_key
    site.page("/gone", "gone", status=410)
    actions.recheck(archive, link_id)
    assert link_of(archive, link_id).override_response is None


def test_response_keys_fit_their_column_and_ignore_only_the_query() -> None:
    base = CheckOutcome(Verdict.NOT_FOUND, 404, "https://a.org/p?x=1#f")
    assert len(base.response_key) == 64
    assert base.response_key == CheckOutcome(Verdict.NOT_FOUND, 404,
                                             "https://A.org/p?x=2").response_key
    for other in (CheckOutcome(Verdict.GONE, 410, "https://a.org/p"),
                  CheckOutcome(Verdict.NOT_FOUND, 404, "https://b.org/p"),
                  CheckOutcome(Verdict.NOT_FOUND, 404, "http://a.org/p"),
                  CheckOutcome(Verdict.NOT_FOUND, 404, "https://a.org/q"),
                  CheckOutcome(Verdict.NOT_FOUND, 404, None)):
        assert other.response_key != base.response_key


def test_undoing_the_override_restores_what_the_checks_said(archive: Archive, site: Site,
                                                            author_app: Flask) -> None:  # noqa: F811
    site.page("/page", "here", status=200)
    url = site.url("/page")
    [link_id] = add_links(archive, [url])
    actions.recheck(archive, link_id)
    alive_at = link_of(archive, link_id).last_alive_at
    site.page("/page", "gone", status=410)
    for _ in range(3):  # health.dead_after_failures, no spacing in the tests
        actions.recheck(archive, link_id)
    dead = link_of(archive, link_id)
    assert dead.state == LinkState.DEAD and report(archive)[0] == 1
    actions.mark_not_broken(archive, link_id)
    assert report(archive)[0] == 0
    browser = author_app.test_client()
    log_in(browser)
    browser.post(f"/links/{link_id}/clear-override",
                 data={"csrf_token": token(browser, f"/links/{link_id}")})
    link = link_of(archive, link_id)
    assert (link.state, link.consecutive_failures, link.first_failure_at, link.last_alive_at) \
        == (LinkState.DEAD, 3, dead.first_failure_at, alive_at)
    code, rows = report(archive)
    assert code == 1 and rows[url]["state"] == "dead"


def test_undoing_an_override_of_a_first_failure_says_failing(archive: Archive,
                                                             site: Site) -> None:
    site.page("/gone", "no", status=404)
    [link_id] = add_links(archive, [site.url("/gone")])
    actions.recheck(archive, link_id)
    actions.mark_not_broken(archive, link_id)
    actions.recheck(archive, link_id)  # held: still not_found
    actions.clear_override(archive, link_id)
    link = link_of(archive, link_id)
    assert (link.state, link.consecutive_failures, link.last_alive_at) == (
        LinkState.FAILING, 2, None)


def test_a_held_override_records_no_false_alive_time(archive: Archive, site: Site) -> None:
    site.page("/gone", "no", status=404)
    url = site.url("/gone")
    [link_id] = add_links(archive, [url])
    actions.recheck(archive, link_id)
    assert report(archive)[1][url]["overridden"] is False
    actions.mark_not_broken(archive, link_id)
    for _ in range(2):
        actions.recheck(archive, link_id)
    link = link_of(archive, link_id)
    assert link.state == LinkState.ALIVE and link.last_alive_at is None  # never answered 2xx
    row = report(archive)[1][url]
    assert row["overridden"] is True and row["last_alive_at"] is None


# -- ignored domains: names, not patterns ----------------------------------------------------

# What LIKE patterns made of the first would match too: '_' stands for any one character.
HOSTS = ["my_blog.example", "sub.my_blog.example:8080", "my-blog.example:8080",
         "x.myxblog.example", "my-blog.example", "other.example"]


@pytest.fixture(params=["sqlite", "postgresql"])
def any_archive(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Archive]:
    """An archive over SQLite, then over a new PostgreSQL database."""
    overrides = ({"database_url": request.getfixturevalue("fresh_pg_url")}
                 if request.param == "postgresql" else {})
    settings = make_settings(tmp_path / "data", **overrides)
    initialise(settings)
    with Archive.open(settings) as opened:
        yield opened


def hosts_of(archive: Archive, domain: str) -> list[str]:
    """Hosts the report's --domain filter lists."""
    with archive.db.session() as session:
        return [link.host for link in session.scalars(links_query(domain=domain))]


def ignored_hosts(archive: Archive) -> list[str]:
    with archive.db.session() as session:
        return list(session.scalars(select(Link.host).where(link_is_ignored())
                                    .order_by(Link.id)))


def test_domain_filters_take_underscore_and_percent_literally(any_archive: Archive) -> None:
    add_links(any_archive, [f"http://{host}/x" for host in HOSTS])
    assert hosts_of(any_archive, "my_blog.example") == HOSTS[:2]
    for pattern in ("%", "%.example", "my%", "my\\_blog.example", "_y_blog.example"):
        assert hosts_of(any_archive, pattern) == [], pattern


def test_ignoring_a_domain_with_an_underscore_ignores_only_it(any_archive: Archive) -> None:
    add_links(any_archive, [f"http://{host}/old" for host in HOSTS])
    actions.ignore_domain(any_archive, "my_blog.example")
    add_links(any_archive, [f"http://{host}/new" for host in HOSTS])  # flagged on insert
    assert ignored_hosts(any_archive) == HOSTS[:2] * 2
    assert actions.unignore_domain(any_archive, "my_blog.example") == "my_blog.example"
    assert ignored_hosts(any_archive) == []


def assert_flags_are_recomputed_on_upgrade(database: Database) -> None:
    """Links flagged by the pattern rule before the upgrade come out of it by the name rule."""
    command.upgrade(database.alembic_config(), "0009")
    with database.engine.begin() as connection:
        connection.execute(text("INSERT INTO ignored_domains (domain, created_at) "
                                "VALUES ('my_blog.example', '2026-01-01')"))
        for n, host in enumerate(HOSTS):
            connection.execute(text(
                "INSERT INTO links (url, url_key, host, created_at, state, ignored, "
                "consecutive_failures) VALUES (:url, :url, :host, '2026-01-01', 'alive', "
                ":ignored, 0)"),
                {"url": f"http://{host}/{n}", "host": host, "ignored": n < 4})
    database.migrate()
    with database.engine.connect() as connection:
        flags = connection.execute(text("SELECT host, ignored FROM links ORDER BY id")).all()
    assert [host for host, flag in flags if flag] == HOSTS[:2]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_upgrade_unflags_links_a_pattern_matched(backend: str, tmp_path: Path,
                                                     request: pytest.FixtureRequest) -> None:
    overrides = ({"database_url": request.getfixturevalue("fresh_pg_url")}
                 if backend == "postgresql" else {})
    settings: Settings = make_settings(tmp_path / "data", **overrides)
    settings.data_dir.mkdir(parents=True)
    database = Database(settings)
    try:
        assert_flags_are_recomputed_on_upgrade(database)
    finally:
        database.dispose()


# -- the link page's and the domains page's actions ------------------------------------------

def ignore_forms(html: str) -> list[str]:
    """The domains the page's "Ignore this domain" forms would post."""
    return re.findall(r'name="domain" value="([^"]*)"', html)


def test_the_ignore_button_works_wherever_it_is_offered(archive: Archive,
                                                        author_app: Flask) -> None:  # noqa: F811
    v4, v6 = add_links(archive, ["http://127.0.0.1:8080/x", "http://[::1]:8080/x"])
    with archive.db.session() as session:  # as discovery stores a URL it cannot parse
        hostless = Link(url="http://[oops/", url_key="http://[oops/", host="")
        session.add(hostless)
        session.flush()
        hostless_id = hostless.id
    browser = author_app.test_client()
    log_in(browser)
    for link_id in (v6, hostless_id):  # no domain can be told: no button that would fail
        assert ignore_forms(browser.get(f"/links/{link_id}").get_data(True)) == []
    [domain] = ignore_forms(browser.get(f"/links/{v4}").get_data(True))
    response = browser.post("/domains", data={"csrf_token": token(browser, "/domains"),
                                              "domain": domain})
    assert response.status_code == 302
    assert ignored_hosts(archive) == ["127.0.0.1:8080"]


def test_unignoring_normalises_and_tells_whether_anything_changed(archive: Archive,
                                                                  author_app: Flask) -> None:  # noqa: F811
    add_links(archive, ["http://example.com/x"])
    actions.ignore_domain(archive, "example.com")
    assert actions.unignore_domain(archive, "nonexist.example") is None
    browser = author_app.test_client()
    log_in(browser)
    answer = browser.post("/domains/Example.COM/delete", follow_redirects=True,
                          data={"csrf_token": token(browser, "/domains")})
    assert "Links to example.com are checked again." in answer.get_data(as_text=True)
    assert ignored_hosts(archive) == [] and actions.ignored_domains(archive) == []
    answer = browser.post("/domains/nonexist.example/delete", follow_redirects=True,
                          data={"csrf_token": token(browser, "/domains")})
    assert "nonexist.example was not ignored." in answer.get_data(as_text=True)
    actions.ignore_domain(archive, "example.com")
    assert actions.unignore_domain(archive, "https://www.Example.com/") == "example.com"
    assert actions.unignore_domain(archive, "not a domain!") is None


def test_undoing_an_override_skips_verdicts_this_version_does_not_know(archive: Archive,
                                                                       site: Site) -> None:
    """A check stored by another version with a verdict since dropped must not turn the
    author's "undo" into an error."""
    from archiver.models import Check

    site.page("/gone", "no", status=404)
    [link_id] = add_links(archive, [site.url("/gone")])
    actions.recheck(archive, link_id)
    actions.mark_not_broken(archive, link_id)
    with archive.db.session() as session:
        session.execute(update(Check).where(Check.link_id == link_id)
                        .values(verdict="verdict_of_another_version"))
    actions.recheck(archive, link_id)  # held: still not_found
    actions.clear_override(archive, link_id)
    link = link_of(archive, link_id)
    assert (link.state, link.consecutive_failures) == (LinkState.FAILING, 1)
