"""A page's caps on bytes and time bind the requisite fetches in flight, and a document that
inflates to tens of megabytes is read for its requisites and sketch only from its head."""

from __future__ import annotations

import contextlib
import gzip
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from warcio.archiveiterator import ArchiveIterator
from werkzeug.wrappers import Request, Response

from archiver.archive import Archive, initialise
from archiver.demo.fixtureweb import Site
from archiver.fingerprint import TEXT_READ_BYTES, sketch
from archiver.jobs import capture_link
from archiver.models import Capture, Link
from tests.conftest import InFlight, make_settings
from tests.test_capture import PNG, add_link, capture, replayed_page

KB = 1000


def opened(tmp_path: Path, **overrides: object) -> Archive:
    settings = make_settings(tmp_path / "data", **overrides)
    initialise(settings)
    return Archive.open(settings)


def stored_payloads(archive: Archive) -> dict[str, tuple[int, str | None]]:
    """Each response record's URL: its payload's length and its WARC-Truncated."""
    archive.store.close()
    found: dict[str, tuple[int, str | None]] = {}
    for name in archive.store.files():
        with archive.store.path_of(name).open("rb") as stream:
            for record in ArchiveIterator(stream):
                if record.rec_type == "response":
                    url = record.rec_headers.get_header("WARC-Target-URI")
                    found[url] = (len(record.raw_stream.read()),  # as sent: not decoded
                                  record.rec_headers.get_header("WARC-Truncated"))
    return found


def test_requisites_in_parallel_store_at_most_the_pages_bytes(tmp_path: Path,
                                                                site: Site) -> None:
    """Twelve images of 300 KB under a 1 MB page cap: whatever runs in parallel, the bodies
    stored come to at most what the page left, those cut (the two in flight, per-host
    concurrency, when the bytes ran out) are marked, the rest never fetched."""
    rng = random.Random(7)
    for i in range(12):
        data = rng.randbytes(300 * KB)
        if i % 2:  # streamed: no Content-Length announces the size
            site.route(f"/big/{i}.png", lambda _r, data=data: Response(
                iter([data[:100 * KB], data[100 * KB:]]), mimetype="image/png"))
        else:
            site.page(f"/big/{i}.png", data, content_type="image/png")
    page = "".join(f'<img src="/big/{i}.png">' for i in range(12))
    site.page("/many", page)
    with opened(tmp_path, capture__max_page_bytes="1MB") as archive:
        assert capture_link(archive, add_link(archive, site.url("/many"))) == "archived"
        payloads = stored_payloads(archive)
        with archive.db.session() as session:
            cut = session.scalars(select(Capture.url).where(Capture.truncated == "length")).all()
    images = {url: value for url, value in payloads.items() if "/big/" in url}
    assert sum(size for size, _ in images.values()) <= 1_000_000 - len(page)
    assert [url for url, (_, truncated) in images.items() if truncated == "length"] == cut
    assert 1 <= len(cut) <= 2 and len(images) < 12
    assert sum(site.hits.get(f"/big/{i}.png", 0) for i in range(12)) < 12


def test_media_read_and_dropped_do_not_count_against_the_page(tmp_path: Path,
                                                               site: Site) -> None:
    """A streamed 800 KB video over max_media_bytes is read, then dropped: its bytes go back to
    the page, so the 400 KB image its style sheet loads next still fits a 1 MB page whole."""
    film = b"\x1a\x45\xdf\xa3" + bytes(800 * KB)
    site.route("/film.webm", lambda _r: Response(iter([film[:400 * KB], film[400 * KB:]]),
                                                 mimetype="video/webm"))
    site.page("/s.css", "body { background: url(/late.png) }", content_type="text/css")
    late = random.Random(3).randbytes(400 * KB)
    site.page("/late.png", late, content_type="image/png")
    site.page("/watch", '<link rel=stylesheet href="/s.css"><video src="/film.webm"></video>')
    with opened(tmp_path, capture__max_page_bytes="1MB",
                capture__max_media_bytes="100KB") as archive:
        assert capture_link(archive, add_link(archive, site.url("/watch"))) == "archived"
        payloads = stored_payloads(archive)
    assert site.hits.get("/film.webm") == 1 and site.url("/film.webm") not in payloads
    assert payloads[site.url("/late.png")] == (len(late), None)


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Lets the slow handlers of a test answer at once when it ends."""
    event = threading.Event()
    yield event
    event.set()


def test_slow_requisites_end_with_the_pages_time(tmp_path: Path, site: Site,
                                                   release: threading.Event) -> None:
    """Eight images of 1.5 s each, two at a time (per-host concurrency): the capture ends when
    max_page_time (2 s) does, not after 6 s; what had not started by then is not requested."""

    def slow(request: Request) -> Response:
        release.wait(1.5)
        return Response(PNG + request.path.encode(), mimetype="image/png")  # no revisits

    for i in range(8):
        site.route(f"/slow/{i}.png", slow)
    site.page("/slow-page", "".join(f'<img src="/slow/{i}.png">' for i in range(8)))
    with opened(tmp_path, capture__max_page_time="2s") as archive:
        link_id = add_link(archive, site.url("/slow-page"))
        started = time.monotonic()
        assert capture_link(archive, link_id) == "archived"
        elapsed = time.monotonic() - started
        images = [url for url in stored_payloads(archive) if "/slow/" in url]
    assert elapsed < 2.8, elapsed
    assert len(images) == 2  # the first two, done in 1.5 s
    assert sum(site.hits.get(f"/slow/{i}.png", 0) for i in range(8)) < 8


def test_a_request_that_waited_for_its_host_gets_only_the_pages_time_left(
        tmp_path: Path, site: Site, release: threading.Event) -> None:
    """One request at a time on the host: the second image waits for the first (1.5 s), then
    drips; it may run only to the page's deadline (2 s), not for a whole fetch.timeout from
    when it was asked for."""

    served = iter([15, 40])  # the first request drips for 1.5 s, the second for 4 s

    def drip(request: Request) -> Response:
        ticks = next(served)

        def chunks() -> Iterator[bytes]:
            yield PNG + request.path.encode()
            for _ in range(ticks):
                if release.wait(0.1):
                    return
                yield b"x" * 10
        return Response(chunks(), mimetype="image/png")

    site.route("/wait/slow.png", drip)
    site.route("/wait/drip.png", drip)
    site.page("/wait-page", '<img src="/wait/slow.png"><img src="/wait/drip.png">')
    with opened(tmp_path, capture__max_page_time="2s", fetch__per_host_concurrency=1,
                fetch__timeout="10s") as archive:
        link_id = add_link(archive, site.url("/wait-page"))
        started = time.monotonic()
        assert capture_link(archive, link_id) == "archived"
        elapsed = time.monotonic() - started
    assert elapsed < 2.8, elapsed


def test_requisites_on_slow_hosts_are_fetched_side_by_side(tmp_path: Path, site: Site) -> None:
    """Eight images on four hosts, each answering after 0.3 s, two at a time per host, with the
    default caps (60 MB a page, 50 MB a fetch): all eight are in flight at once (one round of
    0.3 s), not two at a time as when each fetch set aside its 50 MB first (four rounds)."""
    answering = InFlight()

    def slow(request: Request) -> Response:
        with answering.one():
            time.sleep(0.3)
        body = PNG + request.url.encode()  # no revisits
        if request.path.endswith("1.png"):  # streamed: no Content-Length
            return Response(iter([body]), mimetype="image/png")
        return Response(body, mimetype="image/png")

    hosts = [Site(f"images{n}", host=f"127.0.0.{n}") for n in range(2, 6)]
    with contextlib.ExitStack() as stack:
        for host in hosts:
            stack.enter_context(host)
            for j in range(2):
                host.route(f"/{j}.png", slow)
        site.page("/gallery", "".join(f'<img src="{host.url(f"/{j}.png")}">'
                                      for host in hosts for j in range(2)))
        with opened(tmp_path, fetch__per_host_concurrency=2) as archive:
            link_id = add_link(archive, site.url("/gallery"))
            started = time.monotonic()
            assert capture_link(archive, link_id) == "archived"
            elapsed = time.monotonic() - started
            images = [url for url in stored_payloads(archive) if url.endswith(".png")]
    assert len(images) == 8
    assert answering.peak >= 6, answering.peak
    assert elapsed < 0.9, elapsed  # 2 at a time: at least 4 x 0.3 s


def test_a_page_inflating_to_megabytes_of_tags_is_read_from_its_head(tmp_path: Path,
                                                                      site: Site) -> None:
    """A small gzip body that inflates to 12 MB of <img> tags: requisites and sketch come from
    its first TEXT_READ_BYTES, in bounded time, within the requisite cap; the body is whole."""
    head = "<p>words a reader sees first</p>" + "".join(f'<img src="/a{i}.png">' for i in range(3))
    filler = '<img src="/i.png">' * (12_000_000 // 18)
    html = (head + filler + "<p>words far past the cut</p><img src=/late.png>").encode()
    body = gzip.compress(html, 6)
    assert len(body) < 200 * KB < TEXT_READ_BYTES < len(html)
    site.page("/bomb", body, headers={"Content-Encoding": "gzip"})
    with opened(tmp_path, capture__max_requisites=5) as archive:
        link_id = add_link(archive, site.url("/bomb"))
        started = time.monotonic()
        assert capture_link(archive, link_id) == "archived"
        elapsed = time.monotonic() - started
        payloads = stored_payloads(archive)
        with archive.db.session() as session:
            link = session.get(Link, link_id)
            assert link is not None
            fingerprint = link.last_fingerprint
    assert elapsed < 8, elapsed
    assert payloads[site.url("/bomb")] == (len(body), None)  # stored whole, as sent
    fetched = {path for path in site.hits if path.endswith(".png")}
    assert fetched == {"/a0.png", "/a1.png", "/a2.png", "/i.png"}  # not /late.png
    assert fingerprint == sketch("words a reader sees first")


def test_a_redirect_chain_cut_by_the_pages_bytes_keeps_its_hops(tmp_path: Path,
                                                                 site: Site) -> None:
    """A requisite's redirect whose body spends the page's last bytes: the redirect, which
    was received and paid for, is stored; its target is recorded as skipped, not fetched."""
    hop_body = random.Random(5).randbytes(600 * KB)
    site.route("/hop.png", lambda _r: Response(hop_body, status=302, mimetype="text/html",
                                               headers={"Location": "/real.png"}))
    site.page("/real.png", PNG, content_type="image/png")
    site.page("/cut", '<img src="/hop.png">')
    with opened(tmp_path, capture__max_page_bytes="500KB") as archive:
        assert capture_link(archive, add_link(archive, site.url("/cut"))) == "archived"
        payloads = stored_payloads(archive)
    assert payloads[site.url("/hop.png")][1] == "length"
    assert site.url("/real.png") not in payloads and "/real.png" not in site.hits


def test_a_page_over_the_byte_cap_is_marked_and_still_replays(
        tmp_path: Path, site: Site) -> None:
    """A page cut at capture.max_page_bytes is marked truncated and replays as far as it
    was kept."""
    body = "<html><body><p>start</p>" + "<p>filler text</p>" * 400 + "</body></html>"
    site.page("/big", body)
    with opened(tmp_path, capture__max_page_bytes="2000") as archive:
        from web import create_app

        client = create_app(archive.settings, archive).test_client()
        assert capture(archive, site.url("/big")) == "archived"
        with archive.db.session() as session:
            row = session.scalars(select(Capture).where(Capture.url == site.url("/big"))).one()
        assert row.truncated == "length"
        stamp, html = replayed_page(client, site.url("/big"))
        assert html.startswith("<html><body><p>start</p>") and len(html.encode()) == 2000
        assert stamp
