"""A page's caps on bytes and time bind the requisite fetches in flight, and a document that
inflates to tens of megabytes is read for its requisites and sketch only from its head."""

from __future__ import annotations

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
from tests.conftest import make_settings
from tests.test_capture import PNG, add_link

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
    stored come to at most what the page left, the one cut is marked, the rest never fetched."""
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
    assert len(cut) == 1 and len(images) < 12
    assert sum(site.hits.get(f"/big/{i}.png", 0) for i in range(12)) < 12


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
