"""A fixture web that reproduces each verdict, checked three times: every link must end in the
right state, and no live link may ever be called dead."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from werkzeug.wrappers import Request, Response

from archiver.archive import Archive, initialise
from archiver.check import probe_url
from archiver.cli import cli
from archiver.demo.fixtureweb import Site
from archiver.discover import add_source, discover
from archiver.jobs import WorkKind, run_due
from archiver.models import Link
from archiver.report import link_rows, links_query
from tests.conftest import make_settings

ARTICLE_A = "<html><body><article><h1>Budget vote</h1>{}</article></body></html>".format(
    " ".join(f"The council debated item {n} of the budget at length." for n in range(40)))
ARTICLE_B = "<html><body><article><h1>Garden show</h1>{}</article></body></html>".format(
    " ".join(f"Prize marrow number {n} was judged by the panel today." for n in range(40)))


@dataclass
class HealthWeb:
    general: Site
    parked: Site
    news: Site
    video: Site
    silent: socket.socket
    closed_port: int
    replaced: dict[str, bool]

    def expected(self) -> dict[str, tuple[str, str]]:
        """URL -> (final state, last verdict) after three spaced checks."""
        g, n, v = self.general, self.news, self.video
        return {
            g.url("/ok"): ("alive", "ok"),
            g.url("/moved"): ("alive", "redirect"),
            g.url("/missing"): ("dead", "not_found"),
            g.url("/removed"): ("dead", "gone"),
            g.url("/flaky"): ("alive", "ok"),
            g.url("/busy"): ("unknown", "rate_limited"),
            g.url("/botwall"): ("unknown", "blocked"),
            g.url("/loop"): ("dead", "redirect_loop"),
            g.url("/no-head"): ("alive", "ok"),
            g.url("/replaced"): ("alive", "ok"),
            n.url("/2019/05/story"): ("alive", "ok"),
            n.url("/2008/06/old-blog-post"): ("dead", "redirect_to_root"),
            self.parked.url("/some/deep/page.html"): ("dead", "soft_404"),
            v.url("/watch?v=present"): ("alive", "ok"),
            v.url("/watch?v=removed"): ("dead", "soft_404"),
            f"http://127.0.0.1:{self.silent.getsockname()[1]}/never": ("dead", "timeout"),
            f"http://127.0.0.1:{self.closed_port}/": ("dead", "connection_refused"),
            "http://unknown-host.invalid/page": ("dead", "dns_error"),
        }

    def stop(self) -> None:
        for site in (self.general, self.parked, self.news, self.video):
            site.stop()
        self.silent.close()


def build_health_web() -> HealthWeb:
    general, parked, news, video = (Site(n).start() for n in ("general", "parked", "news", "video"))
    general.page("/ok", "<p>fine</p>")
    general.redirect("/moved", "/ok", 301)
    general.page("/missing", "no", status=404)
    general.page("/removed", "no", status=410)
    flaky_answers = {"n": 0}

    def flaky(_request: Request) -> Response:
        flaky_answers["n"] += 1
        return Response("busy", status=503) if flaky_answers["n"] <= 2 else Response("<p>up</p>")

    general.route("/flaky", flaky)
    general.page("/busy", "slow down", status=429, headers={"Retry-After": "3600"})
    general.page("/botwall", "<title>Just a moment...</title><p>Checking your browser</p>",
                 status=403, headers={"cf-mitigated": "challenge"})
    general.redirect("/loop", "/loop2")
    general.redirect("/loop2", "/loop")

    def no_head(request: Request) -> Response:
        return Response("", status=405) if request.method == "HEAD" else Response("<p>get</p>")

    general.route("/no-head", no_head)
    replaced = {"now": False}
    general.route("/replaced", lambda _r: Response(ARTICLE_B if replaced["now"] else ARTICLE_A,
                                                   content_type="text/html"))
    parked.fallback = lambda _r: Response(
        "<html><body><h1>example-films.com is for sale!</h1><p>Buy this domain today. "
        "Related searches: films, documentaries, DVDs.</p></body></html>",
        content_type="text/html")
    news.page("/", "<h1>Front page</h1><p>All the news.</p>")
    news.page("/2019/05/story", ARTICLE_A)
    news.redirect("/2008/06/old-blog-post", "/", 302)
    news.fallback = lambda _r: Response("", status=302, headers={"Location": news.url("/")})

    def watch(request: Request) -> Response:
        if request.args.get("v") == "present":
            return Response("<h1>Documentary trailer</h1><video src='/t.webm'></video>"
                            "<p>Uploaded in 2008 by the film's makers, 3 minutes.</p>",
                            content_type="text/html")
        return Response("<h1>Video unavailable</h1><p>This video is no longer available.</p>",
                        content_type="text/html")

    video.route("/watch", watch)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(50)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    return HealthWeb(general, parked, news, video, silent, closed_port, replaced)


@pytest.fixture
def health_web() -> Iterator[HealthWeb]:
    web = build_health_web()
    yield web
    web.stop()


@pytest.fixture
def health_archive(tmp_path: Path, health_web: HealthWeb) -> Iterator[Archive]:
    settings = make_settings(tmp_path / "data", fetch__timeout="0.6s", fetch__concurrency=16,
                             health__retries=1, health__max_retry_after="1s")
    initialise(settings)
    posts = tmp_path / "posts"
    posts.mkdir()
    links = "\n".join(f'<li><a href="{url}">ref {n}</a></li>'
                      for n, url in enumerate(health_web.expected()))
    (posts / "post.html").write_text(f"<ul>{links}</ul>")
    with Archive.open(settings) as archive:
        add_source(archive, str(posts))
        discover(archive)
        yield archive


def states(archive: Archive) -> dict[str, tuple[str, str]]:
    with archive.db.session() as session:
        return {link.url: (link.state, link.last_verdict or "")
                for link in session.scalars(select(Link))}


def test_every_link_ends_in_the_right_state(health_archive: Archive,
                                            health_web: HealthWeb) -> None:
    expected = health_web.expected()
    live = {url for url, (state, _) in expected.items() if state == "alive"}
    assert run_due(health_archive, WorkKind.CAPTURE).claimed == len(expected)
    health_web.replaced["now"] = True  # the page's text is replaced after the first capture
    for round_number in range(3):
        run_due(health_archive, WorkKind.CHECK)
        seen = states(health_archive)
        assert not [url for url in live if seen[url][0] == "dead"], round_number
        if round_number < 2:
            assert "dead" not in {state for state, _ in seen.values()}  # never after 1-2 fails
    assert states(health_archive) == expected


def test_content_drift_is_scored_and_recaptured(health_archive: Archive,
                                                health_web: HealthWeb) -> None:
    replaced_url = health_web.general.url("/replaced")
    steady_url = health_web.news.url("/2019/05/story")
    run_due(health_archive, WorkKind.CAPTURE)
    health_web.replaced["now"] = True
    run_due(health_archive, WorkKind.CHECK)
    with health_archive.db.session() as session:
        rows = {row["url"]: row for row in link_rows(session, list(session.scalars(
            links_query())))}
    assert rows[replaced_url]["drift"] > 0.5
    assert rows[steady_url]["drift"] in (None, 0.0)
    recapture = run_due(health_archive, WorkKind.CAPTURE)
    assert recapture.claimed == 1  # only the replaced page is captured again
    with health_archive.db.session() as session:
        rows = {row["url"]: row for row in link_rows(session, list(session.scalars(
            links_query())))}
    assert rows[replaced_url]["captures"] == 2  # every capture is kept


def test_retry_after_moves_the_next_check(health_archive: Archive,
                                          health_web: HealthWeb) -> None:
    run_due(health_archive, WorkKind.CHECK)
    with health_archive.db.session() as session:
        busy = session.scalar(select(Link).where(Link.url == health_web.general.url("/busy")))
        assert busy is not None and busy.next_check_at is not None and busy.last_checked_at
        assert (busy.next_check_at - busy.last_checked_at).total_seconds() >= 3590


def test_probe_urls_are_random_siblings() -> None:
    assert probe_url("https://a.org/2008/06/post-title").startswith("https://a.org/2008/06/zz")
    assert probe_url("https://a.org/films/x/").endswith("/")
    assert probe_url("https://a.org/doc/page.html").endswith(".html")
    probe = probe_url("https://v.org/watch?v=abc&t=10")
    assert re.fullmatch(r"https://v\.org/watch\?v=zz[0-9a-f]{16}&t=9\d{7}", probe), probe
    # A number for a number (an article ID), of the same length when it is a long one.
    assert re.fullmatch(r"https://a\.org/news/9\d{7}", probe_url("https://a.org/news/4567"))
    assert re.fullmatch(r"https://a\.org/p/9\d{11}\.html",
                        probe_url("https://a.org/p/123456789012.html"))
    assert probe_url("https://a.org/x") != probe_url("https://a.org/x")


def test_report_json_and_exit_code(health_archive: Archive, health_web: HealthWeb) -> None:
    for _ in range(3):
        run_due(health_archive, WorkKind.CHECK)
    env = {"ARCHIVER_DATA_DIR": str(health_archive.settings.data_dir),
           "ARCHIVER_LOG_LEVEL": "WARNING"}
    result = CliRunner().invoke(cli, ["-q", "report", "--format", "json"], env=env)
    assert result.exit_code == 1  # dead links: fail a static site's CI, as lychee does
    rows = {row["url"]: row for row in json.loads(result.stdout)}
    missing = rows[health_web.general.url("/missing")]
    assert missing["state"] == "dead" and missing["failures"] == 3
    assert missing["first_failure_at"] and missing["evidence"]["chain"][0]["status"] == 404
    assert rows[health_web.general.url("/ok")]["last_alive_at"]
    alive_only = CliRunner().invoke(cli, ["-q", "report", "--format", "json", "--state",
                                          "alive"], env=env)
    assert alive_only.exit_code == 0
    domain = CliRunner().invoke(cli, ["-q", "report", "--format", "csv", "--domain",
                                      "unknown-host.invalid"], env=env)
    assert domain.stdout.count("\n") == 2  # header and one row
