"""Hostile servers meet bounds: one deadline for a whole redirect chain, one budget for a
check's retries, Retry-After values that cannot park or crash a link, raw UTF-8 redirects."""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from archiver.archive import Archive
from archiver.check import RETRY_AFTER_CEILING, check_budget, check_url, retry_after_seconds
from archiver.clock import utcnow
from archiver.health import apply_verdict
from archiver.jobs import WorkKind, run_due
from archiver.models import Check, Link, LinkState
from archiver.net.client import FetchError, HttpClient
from archiver.urls import host_of, url_key
from archiver.verdicts import Verdict
from tests.conftest import Answer, RawSite, make_settings, response

PAGE = b"<html><body><p>A real article with plenty of its own words in it.</p></body></html>"


@pytest.fixture
def raw_site() -> Iterator[Callable[[Answer], RawSite]]:
    started: list[RawSite] = []

    def start(answer: Answer) -> RawSite:
        started.append(RawSite(answer))
        return started[-1]

    yield start
    for server in started:
        server.close()


def slow_chain(_method: str, path: str) -> bytes:
    """Ten redirects, each answered after 0.6 s: every hop well inside the timeout."""
    hop = int(path.rsplit("/", 1)[1])
    time.sleep(0.6)
    if hop < 10:
        return response(b"302 Found", b"Location: /chain/%d\r\n" % (hop + 1))
    return response(b"200 OK", body=PAGE)


def test_fetch_timeout_bounds_the_whole_redirect_chain(
        tmp_path: Path, raw_site: Callable[[Answer], RawSite]) -> None:
    client = HttpClient(make_settings(tmp_path, fetch__timeout="1.5s"))
    site = raw_site(slow_chain)
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        client.fetch(site.url("/chain/0"))
    elapsed = time.monotonic() - started
    assert elapsed < 1.5 * 1.5  # not 11 x 0.6 s
    assert caught.value.verdict is Verdict.TIMEOUT
    hops = caught.value.exchanges  # the redirects that came in time are kept
    assert 1 <= len(hops) <= 2 and all(hop.status == 302 for hop in hops)


def test_a_check_s_retries_share_one_budget(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, fetch__timeout="0.5s", health__retries=4)
    listener = socket.create_server(("127.0.0.1", 0))  # accepts into its backlog, never answers
    try:
        started = time.monotonic()
        outcome = check_url(HttpClient(settings),
                            f"http://127.0.0.1:{listener.getsockname()[1]}/x", settings)
        elapsed = time.monotonic() - started
    finally:
        listener.close()
    assert check_budget(settings) == 3.0  # (4 retries + 1 attempt + 1 spare) x 0.5 s
    assert outcome.verdict is Verdict.TIMEOUT
    # HEAD and GET of 0.5 s each: five of them fit, in three attempts instead of five.
    assert outcome.evidence["attempts"] == 3
    assert elapsed < check_budget(settings) * 1.2  # not 5 attempts x 2 requests x 0.5 s


def test_a_raw_utf8_location_reaches_the_page(
        tmp_path: Path, raw_site: Callable[[Answer], RawSite]) -> None:
    def answer(_method: str, path: str) -> bytes:
        if path == "/d/moved":
            return response(b"301 Moved", b"Location: /d/caf\xc3\xa9\r\n")
        if path == "/d/caf%C3%A9":
            return response(b"200 OK", body=PAGE)
        return response(b"404 Not Found", body=b"no")

    site = raw_site(answer)
    settings = make_settings(tmp_path)
    outcome = check_url(HttpClient(settings), site.url("/d/moved"), settings)
    assert (outcome.verdict, outcome.http_status) == (Verdict.REDIRECT, 200)
    assert outcome.final_url == site.url("/d/caf%C3%A9")


@pytest.mark.parametrize(("header", "seconds"), [
    ("120", 120.0),
    (" 7 ", 7.0),
    ("0", 0.0),
    ("\u00b2", None),            # superscript two: str.isdigit() says yes, float() says no
    ("\u0661\u0662", None),      # Arabic-Indic digits
    ("1e400", None),
    ("-5", None),
    ("999999999999", RETRY_AFTER_CEILING),
    ("Fri, 01 Jan 2100 00:00:00 GMT", RETRY_AFTER_CEILING),
    ("Fri, 31 Dec 9999 23:59:59 -2359", RETRY_AFTER_CEILING),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ("Fri, 01 Jan 2100 99:00:00 GMT", None),
    ("Fri, 01 Jan 99999 00:00:00 GMT", None),
])
def test_retry_after_is_ascii_digits_or_a_date_and_bounded(header: str,
                                                           seconds: float | None) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds(header, now) == seconds


@pytest.mark.parametrize("retry_after", [1e300, math.inf, math.nan, -5.0])
def test_no_retry_after_overflows_or_parks_a_link(tmp_path: Path, retry_after: float) -> None:
    settings = make_settings(tmp_path)
    link = Link(url="https://example.com/a", url_key="com,example)/a", host="example.com",
                consecutive_failures=0)
    checked_at = datetime(2026, 1, 1, 12)
    apply_verdict(link, Verdict.RATE_LIMITED, checked_at, settings, retry_after)
    assert link.next_check_at is not None
    assert link.next_check_at <= checked_at + timedelta(seconds=settings["health.recheck_dead"])


def hostile_retry_after(_method: str, path: str) -> bytes:
    if path == "/good":
        return response(b"200 OK", body=PAGE)
    if path == "/sup":  # a stray latin-1 byte, on a page that is fine
        return response(b"200 OK", b"Retry-After: \xb2\r\n", PAGE)
    if path == "/cdn":  # a CDN that sends Retry-After on everything, a fine page included
        return response(b"200 OK", b"Retry-After: 2000000\r\n", PAGE)
    if path == "/huge":
        return response(b"429 Too Many Requests", b"Retry-After: 999999999999\r\n")
    if path == "/far":
        return response(b"503 Busy", b"Retry-After: Fri, 01 Jan 2100 00:00:00 GMT\r\n")
    return response(b"404 Not Found", body=b"no such page")  # the soft-404 probes


def test_hostile_retry_after_values_are_stored_with_a_bounded_next_check(
        archive: Archive, raw_site: Callable[[Answer], RawSite]) -> None:
    site = raw_site(hostile_retry_after)
    paths = ["/good", "/sup", "/cdn", "/huge", "/far"]
    now = utcnow()
    with archive.db.session() as session:
        session.add_all(Link(url=site.url(p), url_key=url_key(site.url(p)),
                             host=host_of(site.url(p)), next_check_at=now) for p in paths)
    summary = run_due(archive, WorkKind.CHECK)  # one batch: one bad value must not sink it
    assert summary.outcomes == {"ok": 3, "rate_limited": 1, "server_error": 1}
    recheck_dead = timedelta(seconds=archive.settings["health.recheck_dead"])
    with archive.db.session() as session:
        links = {link.url.rsplit("/", 1)[1]: link for link in session.scalars(select(Link))}
        checked = set(session.scalars(select(Check.link_id)))
        assert checked == {link.id for link in links.values()}
        assert links["sup"].state == links["cdn"].state == LinkState.ALIVE
        recheck_alive = timedelta(seconds=archive.settings["health.recheck_alive"])
        cdn = links["cdn"]  # a 200's Retry-After does not postpone the weekly recheck
        assert cdn.next_check_at is not None and cdn.last_checked_at is not None
        assert cdn.next_check_at - cdn.last_checked_at <= recheck_alive * 1.1
        assert links["huge"].state == LinkState.UNKNOWN
        assert links["far"].state == LinkState.FAILING
        for name in ("huge", "far"):  # the server's wish, up to a dead link's recheck
            link = links[name]
            assert link.next_check_at is not None and link.last_checked_at is not None
            assert link.next_check_at - link.last_checked_at == recheck_dead
