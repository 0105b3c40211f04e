"""Can the author trust "dead" (and "alive")?  Real-world server behaviour that link checkers
are known to get wrong (single-page apps, sign-in and consent walls, index pages, bodies cut
short, probes that a site's router refuses or a busy site answers 503), each against a real
loopback server and the real database, checked as the scheduler checks (``run_due``,
``health.failure_spacing = 0s``) and read back through ``archiver report --format json``.
Found by a review from outside: the tests of the first two sections failed before their
fixes; the last section pins behaviour the review found right that no other test covered."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import select
from werkzeug.wrappers import Request, Response

from archiver.archive import Archive, initialise
from archiver.check import FAILED_PROBE_TTL, ProbeCache, check_url, is_wall
from archiver.demo.fixtureweb import Site
from archiver.fingerprint import body_sketch
from archiver.jobs import WorkKind, capture_link, run_due
from archiver.models import SiteProbe
from archiver.net.client import HttpClient
from archiver.settings import Settings
from archiver.verdicts import Verdict
from tests.conftest import RawSite, make_settings, read_request_head
from tests.test_capture_limits import stored_payloads
from tests.test_jobs import add_links
from tests.test_override import report

ARTICLE = "<html><body><article><h1>Budget vote</h1>{}</article></body></html>".format(
    " ".join(f"The council debated item {n} of the budget at length." for n in range(40)))
NOT_FOUND_PAGE = ("<html><body><h1>Sorry</h1><p>The page you asked for does not exist or was "
                  "removed from our site. Try the search box above.</p></body></html>")


# -- helpers -----------------------------------------------------------------------------

@contextmanager
def fast_archive(tmp_path: Path, **overrides: object) -> Iterator[Archive]:
    """An archive that checks fast: one retry, no backoff, no spacing between failures."""
    values: dict[str, object] = {"fetch__timeout": "2s", "health__retries": 1, **overrides}
    settings = make_settings(tmp_path / "data", **values)
    initialise(settings)
    with Archive.open(settings) as opened:
        yield opened


@pytest.fixture
def quick(tmp_path: Path) -> Iterator[Archive]:
    with fast_archive(tmp_path) as opened:
        yield opened


def checks(archive: Archive, times: int, *, everything: bool = False) -> None:
    """Run the scheduler's check job ``times`` times (each failure is due at once)."""
    for _ in range(times):
        run_due(archive, WorkKind.CHECK, everything=everything)


def after_three_checks(archive: Archive, url: str) -> tuple[int, dict[str, Any]]:
    """Add ``url`` as a link, check it three times as the scheduler does, and read it back
    through ``archiver report --format json``: the report's exit code and the link's row."""
    add_links(archive, [url])
    checks(archive, 3)
    code, rows = report(archive)
    return code, rows[url]


def checker(tmp_path: Path, **overrides: object) -> tuple[HttpClient, Settings]:
    values: dict[str, object] = {"fetch__timeout": "2s", "health__retries": 0, **overrides}
    settings = make_settings(tmp_path / "c", **values)
    return HttpClient(settings), settings


# -- findings: false "dead" ------------------------------------------------------------------

@pytest.mark.parametrize("index", ["/index.html", "/index.php", "/default.aspx"])
def test_an_index_page_redirected_to_the_root_is_not_a_removed_page(
        quick: Archive, site: Site, index: str) -> None:
    """Old posts cite ``http://project.org/index.html``; the site now serves its home page at
    ``/`` and redirects the old name there.  A reader who clicks lands on exactly the page
    that was cited, yet the link is called ``redirect_to_root`` and ends dead."""
    site.page("/", "<h1>The project</h1><p>Welcome to the project's home page.</p>")
    site.redirect(index, "/", 301)
    code, row = after_three_checks(quick, site.url(index))
    assert row["verdict"] != "redirect_to_root", row["verdict"]
    assert row["state"] != "dead" and code == 0


SPA_SHELL = ('<!doctype html><html><head><title>Docs</title><script src="/static/app.js">'
             '</script></head><body><div id="root"></div><noscript>You need to enable '
             'JavaScript to run this app.</noscript></body></html>')


def test_a_single_page_app_that_serves_one_shell_for_every_path_is_not_dead(
        quick: Archive, site: Site) -> None:
    """A React/Vue documentation site (Netlify's ``/* /index.html 200``): every path, real or
    not, gets the same HTML shell and the router draws the page in the browser.  The cited
    page is there, and its answer has not changed since it was first captured, but the
    random-sibling probe gets the same shell, so the link is a ``soft_404`` and ends dead.
    The probe cannot tell here; the link's own first fingerprint (the same shell) shows the
    site always looked like this."""
    site.fallback = lambda _r: Response(SPA_SHELL, content_type="text/html")
    url = site.url("/docs/getting-started")
    add_links(quick, [url])
    assert run_due(quick, WorkKind.CAPTURE).claimed == 1  # the first capture: the baseline
    checks(quick, 3)
    code, rows = report(quick)
    assert rows[url]["state"] != "dead", (rows[url]["verdict"], rows[url]["evidence"]["probe"])
    assert code == 0


def _interstitial(site: Site, wall: str, param: str, text: str) -> None:
    """From now on every path of ``site`` redirects to ``wall?param=<the URL asked for>``."""
    def answer(request: Request) -> Response:
        if request.path == wall:
            return Response(text, content_type="text/html")
        return Response("", 302, headers={"Location": f"{wall}?{param}="
                                                      + quote(request.url, safe="")})

    site.routes.clear()
    site.fallback = answer


@pytest.mark.parametrize(("wall", "param", "text"), [
    ("/consent", "continue",
     "<h1>Before you continue</h1><p>We use cookies and data to deliver and maintain our "
     "services, measure audience engagement and show personalised ads. Accept all or reject "
     "all to continue to the site.</p>"),
    ("/accounts/login", "next",
     "<h1>Sign in</h1><p>Sign in to continue reading. Email address. Password. Forgot your "
     "password? New here? Create an account.</p>"),
])
def test_a_consent_or_login_wall_in_front_of_a_live_page_is_not_dead(
        tmp_path: Path, site: Site, wall: str, param: str, text: str) -> None:
    """A site puts a cookie-consent (EU) or sign-in wall in front of every page: each URL now
    redirects to the wall with the URL asked for in its query.  The cited page is still
    there behind it (a 401 or 403 in its place would be ``blocked``: unknown, "a person
    should look"), but the probe lands on the same wall, so the link is a ``soft_404`` and
    ends dead, and the author is told so.  (``health.probe_cache = 0s`` stands for the wall
    going up more than an hour after the site was last probed.)"""
    site.page("/watch/documentary", ARTICLE)
    url = site.url("/watch/documentary")
    with fast_archive(tmp_path, health__probe_cache="0s") as archive:
        add_links(archive, [url])
        checks(archive, 1)
        assert report(archive)[1][url]["state"] == "alive"
        _interstitial(site, wall, param, text)
        checks(archive, 3, everything=True)  # a week apart, then at the failure spacing
        code, rows = report(archive)
    assert rows[url]["state"] != "dead", (rows[url]["verdict"], rows[url]["final_url"])
    assert code == 0


HTML_BODY = b"<html><body><h1>Annual report</h1>" + b"<p>A paragraph of the report.</p>" * 60


def cut_short(kind: str) -> RawSite:
    """A server whose GET answers ``200 OK`` and then ends the body early (the connection
    closes mid-body); HEAD is refused, as many application servers do."""
    def answer(method: str, path: str) -> bytes:
        if "/zz" in path:  # the random-sibling probe: a proper 404
            return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        if method == "HEAD":
            return (b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\nContent-Length: 0\r\n"
                    b"Connection: close\r\n\r\n")
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
        if kind == "chunked":  # the last chunk (0) never comes
            return (head + b"Transfer-Encoding: chunked\r\n\r\n"
                    + b"%x\r\n" % len(HTML_BODY) + HTML_BODY + b"\r\n")
        # a Content-Length larger than what is sent (a proxy that cut the body)
        return head + b"Content-Length: %d\r\n\r\n" % (len(HTML_BODY) + 4096) + HTML_BODY

    return RawSite(answer)


@pytest.mark.parametrize("kind", ["chunked", "content-length"])
def test_a_page_whose_body_ends_early_after_200_is_not_dead(quick: Archive, kind: str) -> None:
    """The server said ``200 OK`` and sent most of the page (a browser shows it), then the
    body ended early.  The check only wants the first 256 KB to recognise the page, yet the
    whole answer is thrown away as ``connection_error`` (with no HTTP status kept), retried,
    and after three checks the live page is dead."""
    server = cut_short(kind)
    url = server.url("/reports/annual")
    try:
        add_links(quick, [url])
        checks(quick, 3)
        code, rows = report(quick)
    finally:
        server.close()
    assert rows[url]["state"] != "dead", (rows[url]["verdict"], rows[url]["evidence"]["error"])
    assert rows[url]["http_status"] == 200
    assert code == 0


def test_a_head_200_is_not_undone_by_a_body_that_ends_early(tmp_path: Path) -> None:
    """HEAD says 200; the page's ETag changed since the last check, so the body is read for
    its fingerprint, and that GET's body ends early: the HEAD's success is replaced by
    ``connection_error``.  A page whose ETag changes on every request (common) then fails
    every check after its first, and ends dead."""
    def answer(method: str, path: str) -> bytes:
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
                b'ETag: "%d"\r\n' % time.monotonic_ns())
        if method == "HEAD":
            return head + b"Content-Length: %d\r\n\r\n" % len(HTML_BODY)
        return (head + b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(HTML_BODY)
                + HTML_BODY + b"\r\n")

    server = RawSite(answer)
    client, settings = checker(tmp_path)
    try:
        outcome = check_url(client, server.url("/reports/annual"), settings,
                            previous={"etag": '"1"'})
    finally:
        server.close()
        client.close()
    assert outcome.verdict in {Verdict.OK, Verdict.REDIRECT}, (outcome.verdict, outcome.error)


def test_a_blip_in_the_soft_404_body_read_is_retried_like_any_other(tmp_path: Path,
                                                                     site: Site) -> None:
    """On a site whose random URLs get 200 (a catch-all page), a HEAD success is followed by
    a GET to compare the page's text with the probe's.  That GET runs after the retry loop:
    one 503 on it becomes the check's verdict (``server_error``, a failure) although the
    same 503 on the HEAD or the first GET would have been retried with backoff."""
    answers = {"get": 0}

    def page(request: Request) -> Response:
        if request.method == "HEAD":
            return Response("", content_type="text/html")
        answers["get"] += 1
        if answers["get"] == 1:
            return Response("busy", status=503)
        return Response(ARTICLE, content_type="text/html")

    site.route("/2019/05/budget-vote", page)
    site.fallback = lambda _r: Response(NOT_FOUND_PAGE, content_type="text/html")
    client, settings = checker(tmp_path, health__retries=2)
    outcome = check_url(client, site.url("/2019/05/budget-vote"), settings,
                        probes=ProbeCache(3600))
    client.close()
    assert outcome.verdict is Verdict.OK, (outcome.verdict, outcome.evidence)


# -- findings: false "alive" -----------------------------------------------------------------

def test_a_probe_answered_503_is_not_kept_so_a_parked_domain_is_still_caught(
        quick: Archive, site: Site) -> None:
    """The README: "A probe that failed is not kept: a site that was down for a moment keeps
    its soft-404 detection on the next run."  An expiring domain first goes down (503 to
    everything, the probe included) and then comes back parked (200 for every URL).  The
    503 answer to the probe is kept, in memory and in ``site_probes``, as if the site had
    said "not found" properly, so the next run takes the parking page's 200 at its word: the
    dead link is reported alive."""
    mode = {"now": "down"}
    parked = ("<html><body><h1>example-films.com is for sale!</h1><p>Buy this domain today. "
              "Related searches: films, documentaries, DVDs.</p></body></html>")

    def answer(_request: Request) -> Response:
        if mode["now"] == "down":
            return Response("<h1>Service Unavailable</h1>", status=503)
        return Response(parked, content_type="text/html")

    site.fallback = answer
    url = site.url("/2008/06/old-post")
    add_links(quick, [url])
    checks(quick, 3)
    assert report(quick)[1][url]["state"] == "dead"
    with quick.db.session() as session:
        kept = [probe.status for probe in session.scalars(select(SiteProbe))]
    mode["now"] = "parked"
    with Archive.open(quick.settings) as next_run:  # the next `archiver check`
        checks(next_run, 1, everything=True)
        code, rows = report(next_run)
    assert (rows[url]["state"], rows[url]["verdict"]) == ("dead", "soft_404"), \
        (rows[url]["state"], rows[url]["verdict"], kept)
    assert code == 1


def _article_site(site: Site) -> None:
    """A news site with numeric article IDs: a known ID is an article, an unknown (removed)
    numeric ID is the site's "sorry" page with 200, and a non-numeric one is refused by the
    framework before the application sees it (400 for the query form, 404 from the router's
    ``<int:id>`` for the path form)."""
    def by_query(request: Request) -> Response:
        value = request.args.get("id", "")
        if not value.isdigit():
            return Response("<h1>Bad Request</h1>", status=400, content_type="text/html")
        return Response(ARTICLE if value == "123" else NOT_FOUND_PAGE, content_type="text/html")

    def by_path(request: Request) -> Response:
        value = request.path.rpartition("/")[2]
        if not value.isdigit():
            return Response("<h1>Not Found</h1>", status=404, content_type="text/html")
        return Response(ARTICLE if value == "123" else NOT_FOUND_PAGE, content_type="text/html")

    site.route("/article.php", by_query)
    site.fallback = lambda request: (by_path(request) if request.path.startswith("/news/")
                                     else Response("no", status=404))


@pytest.mark.parametrize("path", ["/article.php?id=4567", "/news/4567"])
def test_a_removed_article_with_a_numeric_id_is_a_soft_404(tmp_path: Path, site: Site,
                                                           path: str) -> None:
    """The random sibling is ``?id=zz<hex>`` or ``/news/zz<hex>``: no article site accepts
    that as an ID, so the probe gets a 400 or a router 404 and the site is taken to report
    missing pages properly, while a removed article (a numeric ID) answers 200 with "sorry".
    A probe keeping the value's shape (digits for digits) lands on that page.  Since a
    paginated list answers any number with a page too, a number-shaped probe alike calls
    the link a soft 404 only when its text moved from what was first archived (the article,
    here); with nothing archived yet, it says nothing."""
    _article_site(site)
    client, settings = checker(tmp_path)
    probes = ProbeCache(3600)
    first = body_sketch(ARTICLE.encode(), "text/html", "", 10**6)
    assert check_url(client, site.url(path.replace("4567", "123")), settings,
                     probes=ProbeCache(3600), baseline=first).verdict is Verdict.OK
    outcome = check_url(client, site.url(path), settings, probes=probes, baseline=first)
    unknown = check_url(client, site.url(path), settings, probes=probes)
    client.close()
    assert outcome.verdict is Verdict.SOFT_404, outcome.evidence.get("probe")
    assert unknown.verdict is Verdict.OK and "nothing archived" in unknown.evidence["probe"]["note"]


def test_a_probe_for_a_pdf_does_not_answer_for_an_html_page(tmp_path: Path, site: Site) -> None:
    """``probe_url`` keeps the last part's extension (``/docs/zz….pdf``) but the cache key is
    the site and parent path only, so a PDF's probe (the static file server's 404) answers
    for every HTML page of that folder for an hour, where the application serves a "sorry"
    page with 200: a removed page is ``ok`` or ``soft_404`` depending on which link of the
    folder happened to be checked first."""
    site.route("/docs/manual.pdf", lambda _r: Response(b"%PDF-1.4 manual",
                                                       content_type="application/pdf"))

    def fallback(request: Request) -> Response:
        if request.path.endswith(".pdf"):
            return Response("no such file", status=404)  # static files: a proper 404
        return Response(NOT_FOUND_PAGE, content_type="text/html")  # the app: 200 "sorry"

    site.fallback = fallback
    client, settings = checker(tmp_path)
    alone = check_url(client, site.url("/docs/old-guide.html"), settings,
                      probes=ProbeCache(3600))
    shared = ProbeCache(3600)
    check_url(client, site.url("/docs/manual.pdf"), settings, probes=shared)
    after_pdf = check_url(client, site.url("/docs/old-guide.html"), settings, probes=shared)
    client.close()
    assert alone.verdict is Verdict.SOFT_404
    assert after_pdf.verdict is Verdict.SOFT_404, after_pdf.evidence.get("probe")


@pytest.mark.parametrize(("hops", "final", "wall"), [
    (["https://a.org/article"], "https://a.org/login?next=/article", True),
    (["https://a.org/article"], "https://a.org/login?next=https%3A%2F%2Fa.org%2Farticle", True),
    (["http://a.org/article", "https://a.org/article"],
     "https://consent.b.org/ml?continue=https://a.org/article&gl=DE", True),  # another host
    (["https://a.org/p?id=7"], "https://a.org/login?return_to=%2Fp%3Fid%3D7", True),
    # A hop that sets a cookie and comes back is no wall, nor is a redirect home.
    (["https://a.org/article", "https://a.org/set?back=/article"],
     "https://a.org/article?s=1", False),
    (["https://a.org/article"], "https://a.org/?from=/", False),
    (["https://a.org/old"], "https://a.org/new?utm_source=old", False),
    (["https://a.org/article"], "https://a.org/login", False),
    # An error page that carries the missing path is a removed page, not a wall ...
    (["https://a.org/old.aspx"], "https://a.org/Error.aspx?aspxerrorpath=/old.aspx", False),
    (["https://a.org/old-page"], "https://a.org/?redirect_from=/old-page", False),
    # ... and a wall may add its own parameters to the address it keeps.
    (["https://www.v.org/watch?v=x1"],
     "https://consent.v.org/m?continue=https://www.v.org/watch%3Fv%3Dx1%26cbrd%3D1&gl=DE", True),
    (["https://a.org/doc"], "https://a.org/accounts/ServiceLogin?service=/doc", True),
])
def test_a_wall_is_a_redirect_that_carries_the_address_asked_for(
        hops: list[str], final: str, wall: bool) -> None:
    assert is_wall(hops, final) is wall


def test_a_page_cut_short_is_archived_and_marked_disconnect(tmp_path: Path) -> None:
    """A capture of a page whose body ended early keeps what arrived, marked as WARC says a
    body cut by the server is (``WARC-Truncated: disconnect``), not as a failed capture."""
    server = cut_short("content-length")
    settings = make_settings(tmp_path / "data", capture__respect_robots=False)
    initialise(settings)
    try:
        with Archive.open(settings) as archive:
            [link_id] = add_links(archive, [server.url("/reports/annual")])
            assert capture_link(archive, link_id) == "archived"
            stored = stored_payloads(archive)
    finally:
        server.close()
    assert stored[server.url("/reports/annual")] == (len(HTML_BODY), "disconnect")


def test_a_failed_probe_is_asked_again_within_minutes(tmp_path: Path, site: Site) -> None:
    """A probe answered 503 (the site busy a moment) is not taken as the site's way with
    junk URLs for the cache's hour: after FAILED_PROBE_TTL it is asked again."""
    answers = iter([503, 200])
    site.page("/2008/06/article", ARTICLE)
    site.fallback = lambda _r: Response(NOT_FOUND_PAGE, status=next(answers, 200),
                                        content_type="text/html")
    client, settings = checker(tmp_path)
    probes = ProbeCache(3600)
    url = site.url("/2008/06/gone")
    site.page("/2008/06/gone", NOT_FOUND_PAGE)
    assert check_url(client, url, settings, probes=probes).verdict is Verdict.OK
    assert check_url(client, url, settings, probes=probes).verdict is Verdict.OK  # remembered
    key, (when, found) = next(iter(probes._entries.items()))
    assert found is None
    probes._entries[key] = (when - FAILED_PROBE_TTL, None)  # minutes later
    assert check_url(client, url, settings, probes=probes).verdict is Verdict.SOFT_404
    client.close()


SORRY = ("<html><body><h1>Sorry, an error occurred</h1><p>The page you requested could not "
         "be found. It may have been moved or removed. Please use the site search or go "
         "back to the home page.</p></body></html>")
CONSENT = ("<html><body><h1>Before you continue to YouTube</h1><p>We use cookies and data to "
           "deliver and maintain Google services, track outages and protect against spam, "
           "fraud and abuse, measure audience engagement and site statistics. Accept all or "
           "reject all to continue.</p></body></html>")


def _words(topic: str, count: int = 60) -> str:
    return " ".join(f"{topic} remark {n} about the {topic} in question." for n in range(count))


@pytest.mark.parametrize(("landing", "param"), [("/Error.aspx", "aspxerrorpath"),
                                                ("/", "redirect_from")])
def test_a_removed_page_behind_an_error_redirect_carrying_its_path_ends_dead(
        quick: Archive, site: Site, landing: str, param: str) -> None:
    """ASP.NET's customErrors (and many CMS 404 handlers) answer a missing page with a 302 to
    ``/Error.aspx?aspxerrorpath=/the/missing/page.aspx`` and a 200 "sorry" page.  That is a
    soft 404 (the probe lands on the same "sorry" page), but ``is_wall`` used to see a
    redirect whose query carries the path asked for and call it ``blocked``: the link was
    "unknown" for ever and never reported dead.  So is a removed page sent home with its old path
    (``/?redirect_from=/old-page``)."""
    def answer(request: Request) -> Response:
        if request.path == landing:
            return Response(SORRY, content_type="text/html")
        return Response("", 302, headers={
            "Location": f"{landing}?{param}=" + quote(request.path)})

    site.fallback = answer
    code, row = after_three_checks(quick, site.url("/news/2009/council-budget-vote.aspx"))
    assert row["state"] == "dead", \
        (row["verdict"], row["evidence"].get("error"), row["final_url"])
    assert code == 1


def test_a_consent_wall_that_adds_to_the_continue_url_is_still_a_wall(
        quick: Archive, site: Site) -> None:
    """YouTube's EU consent wall (consent.youtube.com/m?continue=…) carries the address asked
    for with a parameter of its own appended (``…watch?v=ID&cbrd=1``), which ``is_wall`` once missed
    (it wanted the value to equal a hop's URL exactly): the probe landed on the same wall,
    the texts matched, and the live video was a ``soft_404``, dead after three checks."""
    def answer(request: Request) -> Response:
        if request.path == "/m":
            return Response(CONSENT, content_type="text/html")
        target = request.url + ("&" if "?" in request.url else "?") + "cbrd=1"
        return Response("", 302, headers={
            "Location": "/m?continue=" + quote(target, safe="") + "&gl=DE&m=0&pc=yt&hl=de"})

    site.fallback = answer
    code, row = after_three_checks(quick, site.url("/watch?v=dQw4w9WgXcQ"))
    assert row["state"] != "dead", (row["verdict"], row["final_url"])
    assert row["verdict"] == "blocked", row["verdict"]
    assert code == 0


def test_a_get_cut_off_after_a_redirect_hop_does_not_undo_the_heads_success(
        tmp_path: Path) -> None:
    """HEAD follows ``/old`` -> ``/new`` and gets 200; the page's ETag changed, so the body is
    read by GET, and the GET's connection drops before ``/new`` answers.  A first fix kept the
    HEAD's success only when the failed GET had no HTTP status at all; here the status of
    the redirect hop (301) is the GET's, so ``connection_error`` won and a page whose
    ETag changes on every request (common) fails every check but its first."""
    def answer(method: str, path: str) -> bytes:
        if path == "/old":
            return (b"HTTP/1.1 301 Moved Permanently\r\nLocation: /new\r\n"
                    b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        if method == "HEAD":
            return (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
                    b'ETag: "%d"\r\nContent-Length: 5000\r\n\r\n' % time.monotonic_ns())
        return b""  # the GET: the connection closes before any answer

    server = RawSite(answer)
    client, settings = checker(tmp_path)
    try:
        outcome = check_url(client, server.url("/old"), settings, previous={"etag": '"1"'})
    finally:
        server.close()
        client.close()
    assert outcome.verdict in {Verdict.OK, Verdict.REDIRECT}, \
        (outcome.verdict, outcome.http_status, outcome.error)


def _paginated_topic(site: Site) -> None:
    """A forum topic (Django's ``Paginator.get_page``, vBulletin, phpBB): three pages of
    replies; a page number past the end shows the last page, a page that is not a number
    the first.  Any other topic or path is a proper 404."""
    pages = {n: f"<html><body><h1>Topic 77</h1><div>{_words(f'reply-page-{n}')}</div>"
                f"</body></html>" for n in (1, 2, 3)}

    def topic(request: Request) -> Response:
        value = request.args.get("page", "1")
        number = int(value) if value.isdigit() else 1
        return Response(pages[max(1, min(number, 3))], content_type="text/html")

    site.route("/forum/topic/77/", topic)


def test_the_last_page_of_a_paginated_topic_is_not_a_soft_404(tmp_path: Path,
                                                              site: Site) -> None:
    """``?page=3``, the topic's last page, is cited.  The probe keeps the number's shape
    (``?page=9xxxxxxx``), which a paginator clamps to the last page: the very page cited,
    which must not make the live page a ``soft_404`` (it is as first archived)."""
    _paginated_topic(site)
    client, settings = checker(tmp_path)
    outcome = check_url(client, site.url("/forum/topic/77/?page=3"), settings,
                        probes=ProbeCache(3600))
    client.close()
    assert outcome.verdict is Verdict.OK, outcome.evidence.get("probe")


def _discourse_like(site: Site) -> None:
    """A Discourse topic: ``/t/<slug>/<topic>/<post number>``; a post number past the end
    shows the topic (scrolled to its last post); the router takes digits only (anything
    else is a 404), and an unknown topic is a 404."""
    text = (f"<html><body><h1>Packaging the archiver</h1><div>{_words('wheel')}</div>"
            f"</body></html>")

    def answer(request: Request) -> Response:
        parts = request.path.strip("/").split("/")
        if len(parts) == 4 and parts[:3] == ["t", "packaging-the-archiver", "4242"] and \
                parts[3].isdigit():
            return Response(text, content_type="text/html")
        return Response("<h1>Oops! That page doesn't exist</h1>", status=404,
                        content_type="text/html")

    site.fallback = answer


def test_a_post_of_a_short_forum_topic_is_not_a_soft_404(tmp_path: Path, site: Site) -> None:
    """A link to post 3 of a Discourse topic.  The probe ``/t/…/4242/9xxxxxxx`` is shown the
    same topic (Discourse jumps to the last post), which must not make the live post a
    ``soft_404``."""
    _discourse_like(site)
    client, settings = checker(tmp_path)
    outcome = check_url(client, site.url("/t/packaging-the-archiver/4242/3"), settings,
                        probes=ProbeCache(3600))
    client.close()
    assert outcome.verdict is Verdict.OK, outcome.evidence.get("probe")


@pytest.mark.parametrize("path", ["/index.xml", "/index.json"])
def test_a_removed_feed_named_index_redirected_home_is_redirect_to_root(
        tmp_path: Path, site: Site, path: str) -> None:
    """A cited Hugo feed (``/index.xml``) or API document (``/index.json``) that is gone and
    redirected home is ``redirect_to_root``, not a plain ``redirect`` (alive).  Only a
    document's own file names (``index.html``, ``.htm``, ``.php``, ``.asp(x)``...) are the
    home page."""
    site.page("/", "<h1>Home</h1><p>Welcome.</p>")
    site.redirect(path, "/", 301)
    client, settings = checker(tmp_path)
    outcome = check_url(client, site.url(path), settings, probes=ProbeCache(3600))
    client.close()
    assert outcome.verdict is Verdict.REDIRECT_TO_ROOT, outcome.verdict


# -- behaviour found right (kept: no existing test covers these) ----------------------------

@pytest.mark.parametrize("head_status", [400, 403, 404, 500, 501])
def test_head_refused_in_any_way_falls_back_to_get(tmp_path: Path, site: Site,
                                                   head_status: int) -> None:
    """Servers that answer HEAD with 400/403/404/500/501 but GET with 200 (test_check only
    covers 405): the GET decides, and a 5xx HEAD is not retried as a failure."""
    site.route("/page", lambda r: Response("", status=head_status) if r.method == "HEAD"
               else Response("<p>here</p>", content_type="text/html"))
    client, settings = checker(tmp_path)
    outcome = check_url(client, site.url("/page"), settings)
    client.close()
    assert (outcome.verdict, outcome.http_status, outcome.evidence["method"]) == \
        (Verdict.OK, 200, "GET")


@pytest.mark.parametrize(("status", "location", "final"), [
    (307, "target", "/dir/target"),
    (308, "//{host}/dir/target", "/dir/target"),
    (302, "/dir/new page", "/dir/new%20page"),
    (301, "../dir/target?x=1#frag", "/dir/target?x=1#frag"),
])
def test_redirect_locations_as_browsers_read_them(tmp_path: Path, site: Site, status: int,
                                                  location: str, final: str) -> None:
    """Relative, protocol-relative, spaced and dot-segment Locations, on 307 and 308 too."""
    site.route("/dir/start", lambda _r: Response("", status=status, headers={
        "Location": location.format(host=f"127.0.0.1:{site.port}")}))
    site.route("/dir/target", lambda _r: Response("<p>t</p>", content_type="text/html"))
    site.route("/dir/new page", lambda _r: Response("<p>n</p>", content_type="text/html"))
    client, settings = checker(tmp_path)
    outcome = check_url(client, site.url("/dir/start"), settings)
    client.close()
    assert (outcome.verdict, outcome.final_url) == (Verdict.REDIRECT, site.url(final))


def test_headers_then_a_stalled_body_is_alive_not_a_timeout(tmp_path: Path) -> None:
    """``200 OK`` and the start of the page, then nothing until the deadline: the status
    came, so the page is there (a cut body is marked, not failed)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            head = read_request_head(conn)
            method = head.split(b" ", 1)[0]
            if method == b"HEAD":
                conn.sendall(b"HTTP/1.1 405 No\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                             b"Content-Length: 100000\r\n\r\n<p>start of the page")
                stop.wait(3)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    client, settings = checker(tmp_path, fetch__timeout="1s")
    try:
        outcome = check_url(client, f"http://127.0.0.1:{port}/page", settings)
    finally:
        stop.set()
        listener.close()
        client.close()
    assert (outcome.verdict, outcome.http_status) == (Verdict.OK, 200)
