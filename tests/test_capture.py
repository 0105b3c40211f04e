"""Captures that look like the page: requisites, revisits, caps, robots and media limits."""

from __future__ import annotations

import codecs
import gzip
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from datetime import timedelta
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.wrappers import Request, Response

from archiver import robots as robots_module
from archiver.archive import Archive, initialise
from archiver.capture import RETRIED_SOON, CaptureOutcome, Skipped, SkipReason
from archiver.clock import utcnow
from archiver.demo.fixtureweb import Site
from archiver.fingerprint import body_sketch, is_current, similarity, sketch
from archiver.jobs import WorkKind, capture_link, run_due
from archiver.models import Capture, Link
from archiver.net.content import css_charset
from archiver.sketch_pool import SketchPool
from archiver.urls import host_of, url_key
from archiver.warc.store import payload_digest
from tests.conftest import RawSite, Server, make_settings
from tests.test_jobs import add_links
from tests.test_notify import closed_port
from tests.test_warc import warcio_check, writes_fail_past
from web import create_app

PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
                    "0000000d49444154789c63f8cfc0f01f0005000201e0a7d5b50000000049454e44ae426082")
WOFF2 = b"wOF2" + bytes(60)
GIF = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c000000000100"
                    "01000002024401003b")


def add_link(archive: Archive, url: str) -> int:
    with archive.db.session() as session:
        link = Link(url=url, url_key=url_key(url), host=host_of(url), next_capture_at=utcnow())
        session.add(link)
        session.flush()
        return link.id


def captured_urls(archive: Archive) -> dict[str, list[str]]:
    with archive.db.session() as session:
        rows = session.execute(select(Capture.url, Capture.record_type)).all()
    found: dict[str, list[str]] = {}
    for url, kind in rows:
        found.setdefault(url, []).append(kind)
    return found


@pytest.fixture
def article(site: Site) -> Iterator[Site]:
    """An article page whose rendering needs assets on its own host and on a CDN."""
    cdn = Site("cdn").start()
    cdn.page("/fonts.css", "@font-face{font-family:F;src:url(f.woff2) format('woff2')}",
             content_type="text/css")
    cdn.page("/f.woff2", WOFF2, content_type="font/woff2")
    cdn.page("/photo-2x.png", PNG + b"2x", content_type="image/png")
    site.page("/style.css", f'@import url("{cdn.url("/fonts.css")}");\n'
              "body{background:url(/img/bg.png)}", content_type="text/css")
    site.page("/img/bg.png", PNG + b"bg", content_type="image/png")
    site.page("/img/photo.png", PNG, content_type="image/png")
    site.page("/app.js", "console.log(1)", content_type="application/javascript")
    site.page("/frame.html", '<html><body><img src="/img/in-frame.png"></body></html>')
    site.page("/img/in-frame.png", PNG + b"frame", content_type="image/png")
    site.page("/article", f"""<html><head><link rel="stylesheet" href="/style.css">
<script src="/app.js"></script><link rel="canonical" href="/article"></head>
<body><img src="/img/photo.png" srcset="/img/photo.png 1x, {cdn.url('/photo-2x.png')} 2x">
<iframe src="/frame.html"></iframe><a href="/elsewhere">not a requisite</a></body></html>""")
    site.cdn = cdn  # type: ignore[attr-defined]
    yield site
    cdn.stop()


def test_requisites_are_captured_on_any_host(archive: Archive, article: Site) -> None:
    cdn: Site = article.cdn  # type: ignore[attr-defined]
    add_link(archive, article.url("/article"))
    assert run_due(archive, WorkKind.CAPTURE).outcomes == {"archived": 1}
    urls = captured_urls(archive)
    for expected in (article.url("/article"), article.url("/style.css"), cdn.url("/fonts.css"),
                     cdn.url("/f.woff2"), article.url("/img/bg.png"),
                     article.url("/img/photo.png"), cdn.url("/photo-2x.png"),
                     article.url("/app.js"), article.url("/frame.html"),
                     article.url("/img/in-frame.png")):
        assert expected in urls, expected
    assert article.url("/elsewhere") not in urls
    assert article.hits.get("/elsewhere") is None
    archive.store.close()
    files = [archive.store.path_of(name) for name in archive.store.files()]
    assert warcio_check(*files).returncode == 0


def test_a_captured_article_replays_with_its_images_and_styles(
        archive: Archive, article: Site, client: FlaskClient) -> None:
    add_link(archive, article.url("/article"))
    run_due(archive, WorkKind.CAPTURE)
    frame = client.get(f"/web/{article.url('/article')}")
    stamp = frame.headers["Location"].split("/")[2]
    html = client.get(f"/web/{stamp}mp_/{article.url('/article')}").get_data(as_text=True)
    assert f'src="/web/{stamp}mp_/{article.url("/img/photo.png")}"' in html
    image = client.get(f"/web/{stamp}mp_/{article.url('/img/photo.png')}",
                       follow_redirects=True)
    assert image.status_code == 200 and image.data == PNG
    css = client.get(f"/web/{stamp}mp_/{article.url('/style.css')}", follow_redirects=True)
    assert css.status_code == 200 and b"/web/" in css.data  # its url()s point into the archive


def test_unchanged_page_writes_only_revisits(tmp_path: Path, article: Site) -> None:
    """A daily recapture (past capture.requisite_reuse) of an unchanged page: revisits only."""
    settings = make_settings(tmp_path / "d", capture__requisite_reuse="0s")
    initialise(settings)
    with Archive.open(settings) as archive:
        _recapture_unchanged(archive, article)


def _recapture_unchanged(archive: Archive, article: Site) -> None:
    link_id = add_link(archive, article.url("/article"))
    capture_link(archive, link_id)
    files_before = {name: archive.store.path_of(name).stat().st_size
                    for name in archive.store.files()}
    first = captured_urls(archive)
    capture_link(archive, link_id)
    second = captured_urls(archive)
    for url, kinds in second.items():
        assert kinds[: len(first[url])] == first[url]
        new = kinds[len(first[url]):]
        assert new in ([], ["revisit"]), (url, new)
    assert sum(kinds.count("revisit") for kinds in second.values()) >= 9
    archive.store.close()
    added = sum(archive.store.path_of(name).stat().st_size for name in archive.store.files()) \
        - sum(files_before.values())
    with archive.db.session() as session:
        page_revisit = session.scalars(select(Capture).where(
            Capture.url == article.url("/article"), Capture.record_type == "revisit")).one()
    assert page_revisit.length < 2048  # a revisit of an unchanged page costs under 2 KB
    assert added < 12 * 2048


def test_requisites_shared_by_pages_are_fetched_once_per_run(archive: Archive,
                                                              article: Site) -> None:
    article.page("/second", '<html><head><link rel="stylesheet" href="/style.css"></head>'
                 '<body><img src="/img/photo.png"></body></html>')
    add_link(archive, article.url("/article"))
    run_due(archive, WorkKind.CAPTURE)
    add_link(archive, article.url("/second"))
    run_due(archive, WorkKind.CAPTURE)
    assert article.hits["/style.css"] == 1 and article.hits["/img/photo.png"] == 1
    urls = captured_urls(archive)
    assert urls[article.url("/style.css")] == ["response"]


def test_revisits_replay_the_original_payload(archive: Archive, site: Site,
                                              client: FlaskClient) -> None:
    site.page("/a.png", PNG, content_type="image/png")
    site.page("/b.png", PNG, content_type="image/png")  # same bytes at another URL
    run_due_ids = [add_link(archive, site.url("/a.png")), add_link(archive, site.url("/b.png"))]
    for link_id in run_due_ids:
        capture_link(archive, link_id)
    assert captured_urls(archive) == {site.url("/a.png"): ["response"],
                                      site.url("/b.png"): ["revisit"]}
    replay = client.get(f"/web/2id_/{site.url('/b.png')}", follow_redirects=True)
    assert replay.status_code == 200 and replay.data == PNG


def test_page_caps_cut_and_mark(tmp_path: Path, article: Site) -> None:
    settings = make_settings(tmp_path / "d", capture__max_requisites=2)
    initialise(settings)
    with Archive.open(settings) as archive:
        add_link(archive, article.url("/article"))
        run_due(archive, WorkKind.CAPTURE)
        assert len(captured_urls(archive)) == 3  # the page and two requisites
    settings = make_settings(tmp_path / "e", capture__max_page_bytes="300")
    initialise(settings)
    with Archive.open(settings) as archive:
        add_link(archive, article.url("/article"))
        run_due(archive, WorkKind.CAPTURE)
        with archive.db.session() as session:
            page = session.scalars(select(Capture).where(
                Capture.url == article.url("/article"))).one()
        assert page.truncated == "length"
        assert len(captured_urls(archive)) == 1


def test_robots_txt_refusal_is_not_a_failure(archive: Archive, site: Site) -> None:
    site.page("/robots.txt", "User-agent: *\nDisallow: /private/\n", content_type="text/plain")
    site.page("/private/page", "<p>secret</p>")
    link_id = add_link(archive, site.url("/private/page"))
    assert capture_link(archive, link_id) == CaptureOutcome.REFUSED
    assert site.hits.get("/private/page") is None
    with archive.db.session() as session:
        link = session.get(Link, link_id)
        assert link is not None
        assert link.last_capture_outcome == "refused" and "robots.txt" in (
            link.last_capture_error or "")
        assert link.state == "pending"  # the link's health is untouched


@pytest.mark.parametrize("robots_status", [503, None])
def test_an_unreachable_robots_txt_is_a_failure_retried_soon(
        tmp_path: Path, site: Site, robots_status: int | None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A robots.txt that answers 503, or a site that cannot be reached at all, is not the site
    asking not to be archived: the capture failed, and is tried again at
    capture.retry_interval, not a month later; the next try reads robots.txt again."""
    if robots_status is None:  # a loopback site the guard refuses: nothing can be fetched
        settings = make_settings(tmp_path / "d", fetch__allow_private_networks=False)
    else:
        settings = make_settings(tmp_path / "d")
        site.page("/robots.txt", "busy", status=robots_status, content_type="text/plain")
    initialise(settings)
    site.page("/p", "<p>x</p>")
    monkeypatch.setattr(robots_module, "UNREACHABLE_TTL", 0)  # asked again at once
    with Archive.open(settings) as archive:
        link_id = add_link(archive, site.url("/p"))
        assert capture_link(archive, link_id) == CaptureOutcome.FAILED
        with archive.db.session() as session:
            link = session.get(Link, link_id)
            assert link is not None and link.last_capture_at is not None
            assert "robots.txt could not be read" in (link.last_capture_error or "")
            assert link.next_capture_at is not None
            wait = link.next_capture_at - link.last_capture_at
            assert wait <= timedelta(seconds=settings["capture.retry_interval"] * 1.2)
        if robots_status is not None:  # robots.txt is back: the next try captures the page
            site.page("/robots.txt", "User-agent: *\nAllow: /\n", content_type="text/plain")
            assert capture_link(archive, link_id) == CaptureOutcome.ARCHIVED


@pytest.mark.parametrize("how", ["meta", "header"])
def test_noarchive_is_respected(archive: Archive, site: Site, how: str) -> None:
    if how == "meta":
        site.page("/p", '<html><head><meta name="robots" content="noindex, noarchive">'
                  "</head><body>x</body></html>")
    else:
        site.page("/p", "<p>x</p>", headers={"X-Robots-Tag": "noarchive"})
    assert capture_link(archive, add_link(archive, site.url("/p"))) == CaptureOutcome.REFUSED
    assert captured_urls(archive) == {}


def test_robots_can_be_turned_off(tmp_path: Path, site: Site) -> None:
    settings = make_settings(tmp_path / "d", capture__respect_robots=False)
    initialise(settings)
    site.page("/robots.txt", "User-agent: *\nDisallow: /\n", content_type="text/plain")
    site.page("/p", "<p>x</p>", headers={"X-Robots-Tag": "noarchive"})
    with Archive.open(settings) as archive:
        assert capture_link(archive, add_link(archive, site.url("/p"))) == "archived"


def test_large_media_is_skipped_but_the_page_is_kept(tmp_path: Path, site: Site) -> None:
    settings = make_settings(tmp_path / "d", capture__max_media_bytes="1KB")
    initialise(settings)
    site.page("/film.webm", b"\x1a\x45\xdf\xa3" + bytes(5000), content_type="video/webm")
    site.page("/clip.webm", b"\x1a\x45\xdf\xa3" + bytes(100), content_type="video/webm")
    site.page("/watch", '<video src="/film.webm" poster="/p.png"></video>'
              '<video src="/clip.webm"></video>')
    site.page("/p.png", PNG, content_type="image/png")
    with Archive.open(settings) as archive:
        assert capture_link(archive, add_link(archive, site.url("/watch"))) == "archived"
        urls = captured_urls(archive)
        assert site.url("/clip.webm") in urls and site.url("/p.png") in urls
        assert site.url("/film.webm") not in urls
        assert capture_link(archive, add_link(archive, site.url("/film.webm"))) == "skipped"


def test_page_sketches_keep_their_values() -> None:
    """Sketches are stored (a link's first fingerprint) and compared with later ones for years,
    so the hashes behind a version must never change: these were written by version 2.  Those
    of version 1 (no prefix) are still read, and known not to compare with them."""
    text = "The archive keeps a copy of every page an author cites, so readers see it."
    assert sketch(text) == ("2:aff02ff,134f6fcd,333ae8af,3626f93e,470e0078,471d833d,8687f2d4,"
                            "93e768e7,95e38a7f,970c12ed,97dfc08f,bc5bff32,e82d0f51")
    assert sketch("two words") == "2:20dece55"
    assert sketch("") == "2:"
    version_1 = ("a8d06a514017cc5,196a164521804f09,1e7e6318d537d0ee,23fd7198f753dd5d,"
                 "375e1dc522dda764,495d23be94c16e8c,738b554ffe1f561d,9466e1e0cfd5da04,"
                 "a3822529e7a11625,d70f4b3cac450178,e789b08189d7cdaa,f422b902c0479250,"
                 "fadbdf4f7da77a84")  # the same text, as version 1 sketched it
    assert similarity(version_1, version_1) == 1.0
    assert similarity(version_1, sketch(text)) is None
    assert similarity(sketch(text), sketch(text.replace("readers", "people"))) < 1.0
    assert is_current(sketch(text)) and not is_current(version_1) and not is_current(None)


def test_sketches_made_in_the_helper_process_match_and_survive_its_death() -> None:
    page = ("<html><body><p>" + "words a reader sees on the page " * 200
            + "</p><script>var hidden = 1;</script></body></html>").encode()
    args = (page, "text/html; charset=utf-8", "", 10**6)
    pool = SketchPool(processes=1)
    try:
        assert pool.submit(*args)() == body_sketch(*args)
        helper = pool.helper_pid
        assert helper is not None  # the page went to the helper
        os.kill(helper, signal.SIGKILL)  # the helper dies (OOM, a kill)
        while _alive(helper):
            time.sleep(0.05)
        assert pool.submit(*args)() == body_sketch(*args)  # sketched here instead
        assert pool.submit(b"\x89PNG", "image/png", "", 10**6)() == body_sketch(
            b"\x89PNG", "image/png", "", 10**6)
    finally:
        pool.close()


SKETCHED = (b"<p>" + b"some words a reader sees " * 50 + b"</p>", "text/html", "", 10**6)


def test_a_body_the_helper_fails_on_fails_here_and_the_helper_goes_on() -> None:
    pool = SketchPool(processes=1)
    try:
        with pytest.raises(TypeError):  # what body_sketch raises in this process too
            pool.submit(None, "text/html", "", 10**6)()  # type: ignore[arg-type]
        helper = pool.helper_pid
        assert helper is not None and _alive(helper)
        assert pool.submit(*SKETCHED)() == body_sketch(*SKETCHED)
        assert pool.helper_pid == helper  # the same helper: it did not die of the error
    finally:
        pool.close()
    assert not _alive(helper)  # closing the pool ends it


def _sketch_in_this_process(answers: Queue[str | None]) -> None:
    pool = SketchPool(processes=1)
    try:
        answers.put(pool.submit(*SKETCHED)())
    finally:
        pool.close()


def test_a_daemonic_process_gets_the_same_sketches() -> None:
    """A daemonic process (a worker pool's) gets the same sketches: the helper is not a
    multiprocessing child, which such a process may not have."""
    context = multiprocessing.get_context("spawn")
    answers: Queue[str | None] = context.Queue()
    process = context.Process(target=_sketch_in_this_process, args=(answers,), daemon=True)
    process.start()
    try:
        assert answers.get(timeout=60) == body_sketch(*SKETCHED)
    finally:
        process.join(timeout=30)
    assert process.exitcode == 0


HELPER_OWNER = """
import sys, time
from archiver.sketch_pool import SketchPool
pool = SketchPool(processes=1)
pool.submit(b"<p>one two three four</p>", "text/html", "", 1000)()
print(pool.helper_pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status  # a zombie has exited; only its reaping is left


def test_the_sketch_helper_leaves_when_its_process_is_killed() -> None:
    owner = subprocess.Popen([sys.executable, "-c", HELPER_OWNER], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert owner.stdout is not None
        helper = int(owner.stdout.readline())
        assert _alive(helper)
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 15
    while _alive(helper) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(helper), "the helper outlived the process that started it"


def test_a_capture_writes_its_links_state_and_leaves_the_rest(archive: Archive,
                                                              site: Site) -> None:
    """The outcome, the next capture, the sketches, the validators and the lease are written;
    what a check keeps (state, verdict) is left as another writer left it."""
    words = " ".join(f"word{i}" for i in range(60))
    site.page("/p", f"<p>{words}</p>", headers={"ETag": '"v1"'})
    link_id = add_link(archive, site.url("/p"))
    site.page("/loop", "", status=302, headers={"Location": "/loop"})  # a capture that fails
    down_id = add_link(archive, site.url("/loop"))
    with archive.db.session() as session:
        link = session.get(Link, link_id)
        assert link is not None
        link.state, link.last_verdict, link.capture_lease_owner = "alive", "ok", "a run"
    assert run_due(archive, WorkKind.CAPTURE).outcomes == {"archived": 1, "failed": 1}
    first = body_sketch(f"<p>{words}</p>".encode(), "text/html; charset=utf-8", "", 10**6)
    with archive.db.session() as session:
        link, down = session.get(Link, link_id), session.get(Link, down_id)
        assert link is not None and down is not None
        assert (link.state, link.last_verdict) == ("alive", "ok")
        assert (link.last_capture_outcome, link.last_capture_error) == ("archived", None)
        assert link.first_fingerprint == link.last_fingerprint == first
        assert link.drift == 0.0 and (link.validators or {}).get("etag") == '"v1"'
        assert link.capture_lease_owner is None and link.capture_lease_until is None
        assert link.next_capture_at is not None and link.last_capture_at is not None
        assert link.next_capture_at > utcnow() + timedelta(days=20)  # recapture_interval
        assert down.last_capture_outcome == "failed" and down.first_fingerprint is None
        assert down.next_capture_at is not None and down.next_capture_at < link.next_capture_at
    changed = " ".join(f"other{i}" for i in range(60))
    site.page("/p", f"<p>{changed}</p>")
    assert capture_link(archive, link_id) == "archived"
    with archive.db.session() as session:
        link = session.get(Link, link_id)
        assert link is not None
        assert link.first_fingerprint == first and link.last_fingerprint != first
        assert link.drift == 1.0 and "etag" not in (link.validators or {"etag": ""})


def test_a_recapture_of_the_same_bytes_reuses_the_pages_sketch(archive: Archive,
                                                                 site: Site) -> None:
    words = " ".join(f"word{i}" for i in range(60))
    body = f"<p>{words}</p>"
    site.page("/p", body)
    link_id = add_link(archive, site.url("/p"))
    assert capture_link(archive, link_id) == "archived"
    made = body_sketch(body.encode(), "text/html; charset=utf-8", "", 10**6)
    with archive.db.session() as session:
        link = session.get(Link, link_id)
        assert link is not None and link.last_fingerprint == made
        assert link.sketched_digest == payload_digest(body.encode())
        link.last_fingerprint = "2:abc,def"  # what the sketch was, as far as a reuse can tell
    assert capture_link(archive, link_id) == "archived"  # the same bytes: not sketched again
    with archive.db.session() as session:
        link = session.get(Link, link_id)
        assert link is not None and link.last_fingerprint == "2:abc,def"
        link.last_fingerprint = "abc,def"  # made by version 1: not reused
    assert capture_link(archive, link_id) == "archived"
    with archive.db.session() as session:
        link = session.get(Link, link_id)
        assert link is not None and link.last_fingerprint == made
    site.page("/p", body.replace("word1 ", "other "))  # other bytes: sketched again
    assert capture_link(archive, link_id) == "archived"
    with archive.db.session() as session:
        link = session.get(Link, link_id)
        assert link is not None and link.last_fingerprint not in {"2:abc,def", made, None}
        assert link.sketched_digest == payload_digest(body.replace("word1 ", "other ").encode())


def test_a_run_says_when_what_it_archived_was_an_error_page(archive: Archive,
                                                            site: Site) -> None:
    """An answer of 404 is kept as evidence, but the run must not count it as a copy."""
    site.page("/ok", "<p>here</p>")
    site.page("/gone", "<p>no such page</p>", status=404)
    add_link(archive, site.url("/ok"))
    gone_id = add_link(archive, site.url("/gone"))
    summary = run_due(archive, WorkKind.CAPTURE)
    assert summary.outcomes == {"archived": 1, "archived (HTTP 404)": 1}
    assert "1 archived (HTTP 404)" in summary.line()
    with archive.db.session() as session:
        gone = session.get(Link, gone_id)
        assert gone is not None and gone.last_capture_outcome == "archived"


# ------------------------------------------------------------------------------------------
# The reader opens the archived copy: what the page loads is answered from the archive.


@pytest.fixture
def cdn() -> Iterator[Site]:
    """A second host (another port on loopback: another origin, its own robots.txt)."""
    with Site("cdn") as running:
        yield running


def capture(archive: Archive, url: str) -> str | None:
    """Capture ``url`` as a new link, the way a run does; the outcome."""
    return capture_link(archive, add_link(archive, url))


def stamp_of(client: FlaskClient, url: str) -> str:
    """The timestamp of the latest capture of ``url``, as the replay frame redirects to it."""
    frame = client.get(f"/web/{url}")
    assert frame.status_code == 302, frame.status_code
    return frame.headers["Location"].split("/")[2]


def replayed_page(client: FlaskClient, url: str) -> tuple[str, str]:
    """(timestamp, the archived document as the reader's frame loads it)."""
    stamp = stamp_of(client, url)
    page = client.get(f"/web/{stamp}mp_/{url}")
    assert page.status_code == 200
    return stamp, page.get_data(as_text=True)


def served(client: FlaskClient, stamp: str, url: str) -> tuple[int, bytes]:
    """What the archive answers the reader's browser for a requisite (redirects followed as
    the browser follows them)."""
    got = client.get(f"/web/{stamp}mp_/{url}", follow_redirects=True,
                     headers={"Sec-Fetch-Dest": "image"})
    return got.status_code, got.data


def test_lazy_loaded_images_are_captured_and_point_into_the_archive(
        tmp_path: Path, site: Site) -> None:
    """``<img src=placeholder data-src=real data-srcset=...>`` is how most blogs (WordPress
    lazy-load plugins, lazysizes, Medium) ship their images: a script swaps ``data-src`` in as
    the page scrolls. With ``web.replay_scripts`` on, the archived page runs that script, so
    the real images must be in the archive and ``data-src`` must name them there."""
    settings = make_settings(tmp_path / "data", web__replay_scripts=True)
    initialise(settings)
    site.page("/placeholder.gif", GIF, content_type="image/gif")
    site.page("/real.png", PNG + b"real", content_type="image/png")
    site.page("/real-2x.png", PNG + b"real2x", content_type="image/png")
    site.page("/also.png", PNG + b"also", content_type="image/png")
    site.page("/lazy", '<html><body><script src="/lazysizes.js"></script>'
              '<img class="lazyload" src="/placeholder.gif" data-src="/real.png" '
              'data-srcset="/real-2x.png 2x"><img data-lazy-src="/also.png" '
              'src="/placeholder.gif"></body></html>')
    site.page("/lazysizes.js", "/* swaps data-src in */", content_type="text/javascript")
    with Archive.open(settings) as archive:
        from web import create_app

        client = create_app(settings, archive).test_client()
        assert capture(archive, site.url("/lazy")) == "archived"
        stamp, html = replayed_page(client, site.url("/lazy"))
        for path in ("/real.png", "/real-2x.png", "/also.png"):
            assert f"/web/{stamp}mp_/{site.url(path)}" in html, (path, html)
            status, data = served(client, stamp, site.url(path))
            assert status == 200 and data.startswith(PNG), path


def test_iframe_srcdoc_content_is_captured_and_replayed(archive: Archive, site: Site,
                                                         client: FlaskClient) -> None:
    """An ``<iframe srcdoc>`` is a document: the images and style sheets it loads are part
    of what the page shows (embeds, sandboxed widgets, lite-YouTube facades)."""
    site.page("/inner.png", PNG + b"inner", content_type="image/png")
    site.page("/inner.css", "p{color:red}", content_type="text/css")
    site.page("/p", "<html><body><p>x</p><iframe srcdoc=\"<link rel='stylesheet' "
              f"href='{site.url('/inner.css')}'><img src='{site.url('/inner.png')}'>\">"
              "</iframe></body></html>")
    assert capture(archive, site.url("/p")) == "archived"
    urls = captured_urls(archive)
    assert site.url("/inner.png") in urls and site.url("/inner.css") in urls, sorted(urls)
    stamp, html = replayed_page(client, site.url("/p"))
    srcdoc = re.search(r'srcdoc="([^"]*)"', html)
    assert srcdoc is not None
    assert f"/web/{stamp}mp_/{site.url('/inner.png')}" in srcdoc.group(1), srcdoc.group(1)


def test_a_requisite_whose_robots_txt_is_briefly_down_is_recorded_and_retried_soon(
        archive: Archive, site: Site, cdn: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CDN holding the page's style sheet answers 503 for robots.txt (a passing state,
    not the site's wish). The page is archived without the sheet, which is recorded as
    skipped with the reason, and the link is captured again at capture.retry_interval, not
    a month later (capture.recapture_interval): the next try brings the sheet."""
    cdn.page("/robots.txt", "busy", status=503, content_type="text/plain")
    cdn.page("/static/site.css", "body{background:#fee}", content_type="text/css")
    site.page("/p", f'<html><head><link rel="stylesheet" href="{cdn.url("/static/site.css")}">'
              "</head><body><p>styled</p></body></html>")
    monkeypatch.setattr(robots_module, "UNREACHABLE_TTL", 0)  # asked again at once
    result = archive.capturer().capture(site.url("/p"))
    assert result.ok and result.retry_soon
    assert result.skipped == [Skipped(cdn.url("/static/site.css"),
                                      SkipReason.ROBOTS_UNREACHABLE, "HTTP 503")]
    link_id = add_link(archive, site.url("/p"))
    assert capture_link(archive, link_id) == "archived"
    assert cdn.url("/static/site.css") not in captured_urls(archive)
    assert cdn.hits.get("/static/site.css") is None
    with archive.db.session() as session:
        link = session.get(Link, link_id)
        assert link is not None and link.last_capture_at and link.next_capture_at
        wait = link.next_capture_at - link.last_capture_at
    assert wait <= timedelta(seconds=archive.settings["capture.retry_interval"] * 1.2)
    cdn.page("/robots.txt", "User-agent: *\nAllow: /\n", content_type="text/plain")
    assert capture_link(archive, link_id) == "archived"
    assert cdn.url("/static/site.css") in captured_urls(archive)


def test_a_requisite_robots_txt_refuses_is_recorded_and_not_retried(
        archive: Archive, site: Site, cdn: Site) -> None:
    """A CDN whose robots.txt disallows us: its wish, recorded as such; the page keeps its
    usual recapture interval."""
    cdn.page("/robots.txt", "User-agent: *\nDisallow: /private/\n", content_type="text/plain")
    cdn.page("/private/a.png", PNG, content_type="image/png")
    site.page("/p", f'<html><body><img src="{cdn.url("/private/a.png")}"></body></html>')
    result = archive.capturer().capture(site.url("/p"))
    assert result.ok and not result.retry_soon
    assert result.skipped == [Skipped(cdn.url("/private/a.png"), SkipReason.ROBOTS_REFUSED)]
    link_id = add_link(archive, site.url("/p"))
    assert capture_link(archive, link_id) == "archived"
    assert cdn.hits.get("/private/a.png") is None
    with archive.db.session() as session:
        link = session.get(Link, link_id)
        assert link is not None and link.last_capture_at and link.next_capture_at
        wait = link.next_capture_at - link.last_capture_at
    assert wait >= timedelta(seconds=archive.settings["capture.recapture_interval"] * 0.8)


def _capture_waits(archive: Archive, link_id: int, times: int) -> list[timedelta]:
    """Capture the link ``times`` in a row, as due rounds would: the wait set after each."""
    waits = []
    for _ in range(times):
        assert capture_link(archive, link_id) == "archived"
        with archive.db.session() as session:
            link = session.get(Link, link_id)
            assert link is not None and link.next_capture_at and link.last_capture_at
            waits.append(link.next_capture_at - link.last_capture_at)
    return waits


def test_a_requisite_on_a_host_that_stays_down_does_not_recapture_its_page_forever(
        archive: Archive, site: Site) -> None:
    """A requisite whose host refuses connections (its robots.txt "could not be read") does
    not come back in hours: the page keeps capture.recapture_interval (30 d), not
    capture.retry_interval (6 h), which would be 120 times the load on the live site."""
    dead = f"http://127.0.0.1:{closed_port()}/gone.png"
    site.page("/p", f'<html><body><p>text</p><img src="{dead}"></body></html>')
    waits = _capture_waits(archive, add_link(archive, site.url("/p")), 4)
    recapture = timedelta(seconds=archive.settings["capture.recapture_interval"])
    assert all(wait >= recapture * 0.8 for wait in waits), [str(wait) for wait in waits]


def test_a_requisite_whose_robots_txt_stays_down_is_retried_soon_once(
        archive: Archive, site: Site, cdn: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CDN that answers 503 to robots.txt for good (a bot wall, say): the page is captured
    again soon once in a row, then at capture.recapture_interval (the month after, a new
    failure is retried once again); the link page says why it comes back soon."""
    cdn.page("/robots.txt", "busy", status=503, content_type="text/plain")
    cdn.page("/a.png", PNG, content_type="image/png")
    site.page("/p", f'<html><body><img src="{cdn.url("/a.png")}"></body></html>')
    monkeypatch.setattr(robots_module, "UNREACHABLE_TTL", 0)  # asked again at once
    link_id = add_link(archive, site.url("/p"))
    retry = timedelta(seconds=archive.settings["capture.retry_interval"])
    recapture = timedelta(seconds=archive.settings["capture.recapture_interval"])
    for soon in (True, False, True):
        [wait] = _capture_waits(archive, link_id, 1)
        assert wait <= retry * 1.2 if soon else wait >= recapture * 0.8, (soon, wait)
        with archive.db.session() as session:
            link = session.get(Link, link_id)
            assert link is not None
            assert link.last_capture_error == (RETRIED_SOON if soon else None)
    assert cdn.hits.get("/a.png") is None


def test_css_namespace_urls_are_names_not_requisites(archive: Archive, site: Site,
                                                     client: FlaskClient) -> None:
    """``@namespace svg url(http://...)`` names a namespace; no browser fetches it, and the
    replayed sheet must keep it as it was."""
    namespace = site.url("/ns/svg")
    site.page("/ns/svg", "not a resource", content_type="text/plain")
    site.page("/s.css", f"@namespace svg url({namespace});\nsvg|rect {{ fill: red }}\n",
              content_type="text/css")
    site.page("/p", '<html><head><link rel="stylesheet" href="/s.css"></head>'
              "<body><svg><rect width='5' height='5'/></svg></body></html>")
    assert capture(archive, site.url("/p")) == "archived"
    stamp = stamp_of(client, site.url("/p"))
    status, sheet = served(client, stamp, site.url("/s.css"))
    assert status == 200
    assert f"url({namespace})" in sheet.decode(), sheet.decode()
    assert site.hits.get("/ns/svg") is None


def test_a_windows_1251_page_loads_its_non_ascii_query_urls_from_the_archive(
        archive: Archive, site: Site, client: FlaskClient) -> None:
    """On a page whose encoding is windows-1251 (declared in <meta> only), a browser encodes
    the query of ``<img src="/img?name=привет">`` in windows-1251 (the URL standard's
    "query encoding" is the document's): it asks ``?name=%EF%F0%E8%E2%E5%F2``, which a legacy
    server answers. The capture asks the same, and the reader's request finds it."""
    wanted = "/img?name=%EF%F0%E8%E2%E5%F2"  # привет in windows-1251

    def image(request: Request) -> Response:
        if request.query_string == wanted.split("?", 1)[1].encode():
            return Response(PNG + b"cyr", content_type="image/png")
        return Response("no such picture", status=404, content_type="text/plain")

    site.route("/img", image)
    site.page("/фото.png", PNG + b"path", content_type="image/png")
    body = ('<html><head><meta charset="windows-1251"><title>Статья</title></head>'
            '<body><p>Картинка:</p><img src="/img?name=привет"><img src="/фото.png"></body>'
            "</html>")
    site.page("/cyr", body.encode("cp1251"), content_type="text/html")
    assert capture(archive, site.url("/cyr")) == "archived"
    assert site.hits.get(wanted) == 1, site.hits  # the request a browser makes
    assert site.hits.get("/фото.png") == 1, site.hits  # the path is UTF-8 whatever the page
    stamp = stamp_of(client, site.url("/cyr"))
    page = client.get(f"/web/{stamp}mp_/{site.url('/cyr')}").data.decode("cp1251")
    assert f"/web/{stamp}mp_/{site.url('/img?name=привет')}" in page, page
    # The reader's browser, parsing the replayed page as windows-1251, asks these:
    assert served(client, stamp, site.url(wanted)) == (200, PNG + b"cyr")
    assert served(client, stamp, site.url("/%D1%84%D0%BE%D1%82%D0%BE.png")) == (
        200, PNG + b"path")


def test_a_page_whose_meta_charset_lies_asks_for_its_images_as_a_browser_does(
        archive: Archive, site: Site, client: FlaskClient, browser: Any) -> None:
    """A UTF-8 page saying ``<meta charset="iso-8859-1">`` (a common CMS misconfiguration) is
    read by browsers as windows-1252, whose bytes 0x81, 0x8D, 0x8F, 0x90 and 0x9D are C1
    controls there but undefined in Python's cp1252. Chromium asks the bytes of Cyrillic es
    (D1 81) back; the capture asks the same, not U+FFFD sent as %26%2365533%3B."""
    asked: list[bytes] = []

    def image(request: Request) -> Response:
        asked.append(request.query_string)
        return Response(PNG + b"cheese", content_type="image/png")

    site.route("/img", image)
    body = ('<html><head><meta charset="iso-8859-1"></head>'
            '<body><img src="/img?name=сыр"></body></html>')
    site.page("/lie", body.encode("utf-8"), content_type="text/html")
    page = browser.new_page()
    try:
        page.goto(site.url("/lie"))
        page.wait_for_timeout(300)
    finally:
        page.close()
    wanted = "name=%D1%81%D1%8B%D1%80"
    assert asked == [wanted.encode()]  # what Chromium asks
    asked.clear()
    assert capture(archive, site.url("/lie")) == "archived"
    assert asked == [wanted.encode()], asked  # what the capture asked
    stamp = stamp_of(client, site.url("/lie"))
    assert served(client, stamp, site.url(f"/img?{wanted}")) == (200, PNG + b"cheese")


def test_a_windows_1251_style_sheet_loads_its_non_ascii_urls_from_the_archive(
        archive: Archive, site: Site, client: FlaskClient) -> None:
    """A style sheet saying ``@charset "windows-1251";`` (served as plain ``text/css``) is
    read by the browser in that encoding: ``url(/фон.png)`` is the path ``/фон.png``, asked
    for in UTF-8. One that says nothing is read in its page's encoding."""
    site.page("/фон.png", PNG + b"bg", content_type="image/png")
    site.page("/рамка.png", PNG + b"frame", content_type="image/png")
    css = '@charset "windows-1251";\nbody { background: url(/фон.png) }\n'
    site.page("/s.css", css.encode("cp1251"), content_type="text/css")
    site.page("/plain.css", "p { border-image: url(/рамка.png) }".encode("cp1251"),
              content_type="text/css")
    site.page("/p", '<html><head><meta charset="windows-1251">'
              '<link rel="stylesheet" href="/s.css"><link rel="stylesheet" href="/plain.css">'
              "</head><body>x</body></html>", content_type="text/html")
    assert capture(archive, site.url("/p")) == "archived"
    assert site.hits.get("/фон.png") == 1, site.hits  # the request a browser makes
    assert site.hits.get("/рамка.png") == 1, site.hits
    stamp = stamp_of(client, site.url("/p"))
    # What the browser asks once it has read the replayed sheet as windows-1251:
    status, sheet = served(client, stamp, site.url("/s.css"))
    assert status == 200
    rewritten = re.search(r"url\(([^)]*)\)", sheet.decode("cp1251"))
    assert rewritten is not None and rewritten.group(1).startswith(f"/web/{stamp}mp_/")
    assert served(client, stamp, site.url("/%D1%84%D0%BE%D0%BD.png")) == (200, PNG + b"bg")


@pytest.mark.parametrize(("content_type", "body", "referrer", "expected"), [
    ("text/css", b'@charset "windows-1251";\np{}', "utf-8", "windows-1251"),
    ("text/css; charset=koi8-r", b'@charset "windows-1251";', None, "koi8-r"),
    ("text/css", b'@charset "utf-16le";', None, "utf-8"),  # ASCII bytes are no UTF-16
    ("text/css", b'@charset  "windows-1251";', "iso-8859-2", "iso-8859-2"),  # not exactly it
    ("text/css", b"\xef\xbb\xbf@charset \"windows-1251\";", None, "utf-8"),  # the BOM wins
    ("text/css", b"p{}", None, None),
])
def test_a_style_sheets_charset_is_found_as_a_browser_finds_it(
        content_type: str, body: bytes, referrer: str | None, expected: str | None) -> None:
    assert css_charset(content_type, body, referrer) == expected


def test_an_svg_document_embedded_with_object_brings_its_images(
        archive: Archive, site: Site, client: FlaskClient) -> None:
    """An SVG document in ``<object>``/``<embed>``/``<iframe>`` loads its own ``<image
    href>``, ``<use>`` sprites and style sheets (unlike an SVG in ``<img>``): they are
    captured with it, so the diagram replays without holes where its pictures were."""
    site.page("/photo.png", PNG + b"svg-photo", content_type="image/png")
    site.page("/bg.png", PNG + b"svg-bg", content_type="image/png")
    site.page("/sprites.svg", '<svg xmlns="http://www.w3.org/2000/svg"><symbol id="i"/></svg>',
              content_type="image/svg+xml")
    site.page("/diagram.svg", '<svg xmlns="http://www.w3.org/2000/svg" '
              'xmlns:xlink="http://www.w3.org/1999/xlink" width="10" height="10">'
              "<style>rect { fill: url(bg.png) }</style>"
              '<image href="photo.png" width="10" height="10"/>'
              '<use xlink:href="sprites.svg#i"/></svg>', content_type="image/svg+xml")
    site.page("/p", '<html><body><object data="/diagram.svg" type="image/svg+xml">'
              "</object></body></html>")
    assert capture(archive, site.url("/p")) == "archived"
    stamp = stamp_of(client, site.url("/p"))
    assert served(client, stamp, site.url("/photo.png")) == (200, PNG + b"svg-photo")
    assert served(client, stamp, site.url("/bg.png")) == (200, PNG + b"svg-bg")
    assert served(client, stamp, site.url("/sprites.svg"))[0] == 200


def test_an_svg_documents_absolute_image_is_loaded_from_the_archive(
        archive: Archive, site: Site, client: FlaskClient) -> None:
    """The SVG document is rewritten as XHTML is: an absolute ``<image href>`` in it would
    name the live web (which the replay CSP blocks): captured, never shown. Only the URL
    changes; every other byte is as archived."""
    site.page("/photo.png", PNG + b"svg-photo", content_type="image/png")
    document = ('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
                f'<image href="{site.url("/photo.png")}" width="10" height="10"/></svg>')
    site.page("/diagram.svg", document, content_type="image/svg+xml")
    site.page("/p", '<html><body><object data="/diagram.svg" type="image/svg+xml">'
              "</object></body></html>")
    assert capture(archive, site.url("/p")) == "archived"
    assert site.url("/photo.png") in captured_urls(archive)
    stamp = stamp_of(client, site.url("/p"))
    svg = client.get(f"/web/{stamp}mp_/{site.url('/diagram.svg')}",
                     headers={"Sec-Fetch-Dest": "object"})
    assert svg.status_code == 200
    rewritten = f"/web/{stamp}mp_/{site.url('/photo.png')}"
    assert f'href="{rewritten}"'.encode() in svg.data, svg.data
    assert svg.data.decode().replace(rewritten, site.url("/photo.png")) == document


@pytest.fixture
def xhtml_page(site: Site) -> str:
    """A page served as application/xhtml+xml whose first script is self-closed."""
    site.page("/a.js", "var a = 1;", content_type="text/javascript")
    site.page("/s.css", "p{color:red}", content_type="text/css")
    site.page("/i.png", PNG + b"x", content_type="image/png")
    site.page("/later.js", "var b = 2;", content_type="text/javascript")
    site.page("/page.xhtml", f"""<?xml version="1.0" encoding="utf-8"?>
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>t</title>
<script src="/a.js"/>
<link rel="stylesheet" href="/s.css"/>
</head><body><p><img src="{site.url('/i.png')}" alt=""/></p>
<script src="/later.js"></script></body></html>""",
              content_type="application/xhtml+xml; charset=utf-8")
    return site.url("/page.xhtml")


def test_xhtml_self_closing_script_does_not_hide_the_rest_of_the_page(
        archive: Archive, site: Site, xhtml_page: str) -> None:
    """A page served as application/xhtml+xml is parsed by the browser as XML: ``<script
    src="a.js"/>`` is a complete element, and the style sheet and images after it are
    captured."""
    assert capture(archive, xhtml_page) == "archived"
    urls = captured_urls(archive)
    for path in ("/a.js", "/s.css", "/i.png", "/later.js"):
        assert site.url(path) in urls, (path, sorted(urls))


def test_an_xhtml_page_replays_past_a_self_closed_script(
        archive: Archive, site: Site, client: FlaskClient, xhtml_page: str) -> None:
    assert capture(archive, xhtml_page) == "archived"
    stamp, html = replayed_page(client, xhtml_page)
    assert f'src="/web/{stamp}mp_/{site.url("/i.png")}"' in html


def live_and_replayed(archive: Archive, browser: Any, url: str, probe: str) -> tuple[Any, Any]:
    """``probe`` evaluated in Chromium on the live page, then on its latest capture replayed
    by the app on a real socket."""
    app = create_app(archive.settings, archive)
    stamp = stamp_of(app.test_client(), url)
    with Server(app) as server:
        page = browser.new_page()
        try:
            page.goto(url)
            live = page.evaluate(probe)
            page.goto(server.url(f"/web/{stamp}mp_/{url}"))
            return live, page.evaluate(probe)
        finally:
            page.close()


@pytest.mark.parametrize("lead", [b"\n", b"\r\n\t<!-- made by a template -->", codecs.BOM_UTF8])
def test_an_html_page_without_content_type_is_shown_as_the_live_one_was(
        archive: Archive, browser: Any, lead: bytes) -> None:
    """A page archived without a Content-Type is sent with nosniff, so replay sniffs it as the
    browser did on the live site: HTML after whitespace (PHP templates start with a newline)
    or a comment is rewritten and labelled text/html, not shown as its source; after a BOM
    Chromium shows text, and so does replay."""
    body = lead + b"<!DOCTYPE html><html><body><p id='x'>hello</p></body></html>"

    def answer(_method: str, _path: str) -> bytes:
        return (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
                % len(body) + body)

    raw = RawSite(answer)
    try:
        url = raw.url("/p")
        assert capture(archive, url) == "archived"
        live, replayed = live_and_replayed(
            archive, browser, url, "[document.contentType, !!document.getElementById('x')]")
    finally:
        raw.close()
    assert live == (["text/plain", False] if lead == codecs.BOM_UTF8 else ["text/html", True])
    assert replayed == live, replayed


def test_an_xhtml_page_with_a_srcdoc_iframe_replays_as_well_formed_xml(
        archive: Archive, site: Site, browser: Any) -> None:
    """A srcdoc is rewritten by decoding it, rewriting the document and escaping it again; in
    XHTML its '<' must go back as &lt;: written raw it is a fatal XML error, and Chromium
    shows "This page contains the following errors" and drops everything after the iframe."""
    site.page("/i.png", PNG, content_type="image/png")
    doc = ('<?xml version="1.0" encoding="utf-8"?>\n<html xmlns="http://www.w3.org/1999/xhtml">'
           '<head><title>t</title></head><body><p id="x">hello</p>'
           '<iframe srcdoc="&lt;p&gt;in&lt;/p&gt;&lt;img src=&quot;/i.png&quot;&gt;"></iframe>'
           '<p id="after">after</p></body></html>')
    site.page("/x.xhtml", doc, content_type="application/xhtml+xml; charset=utf-8")
    url = site.url("/x.xhtml")
    assert capture(archive, url) == "archived"
    live, replayed = live_and_replayed(
        archive, browser, url, "[document.getElementsByTagName('parsererror').length,"
                               " !!document.getElementById('after')]")
    assert live == [0, True]
    assert replayed == live, replayed


def test_modern_markup_requisites_replay_from_the_archive(archive: Archive, site: Site,
                                                          cdn: Site,
                                                          client: FlaskClient) -> None:
    """Every requisite form a current page uses is captured and answered from the archive."""
    assets = {
        "/webp.webp": (b"RIFF0000WEBP", "image/webp"),
        "/fallback.png": (PNG + b"fb", "image/png"),
        "/hero-1x.png": (PNG + b"h1", "image/png"),
        "/hero-2x.png": (PNG + b"h2", "image/png"),
        "/font.woff2": (WOFF2, "font/woff2"),
        "/mod.js": (b"export const a = 1;", "text/javascript"),
        "/icon.png": (PNG + b"icon", "image/png"),
        "/touch.png": (PNG + b"touch", "image/png"),
        "/poster.png": (PNG + b"poster", "image/png"),
        "/clip.mp4": (b"\x00\x00\x00\x18ftypmp42" + bytes(40), "video/mp4"),
        "/sound.ogg": (b"OggS" + bytes(40), "audio/ogg"),
        "/subs.vtt": (b"WEBVTT\n", "text/vtt"),
        "/obj.pdf": (b"%PDF-1.4\n%%EOF\n", "application/pdf"),
        "/embed.png": (PNG + b"embed", "image/png"),
        "/button.png": (PNG + b"button", "image/png"),
        "/svg-image.png": (PNG + b"svgimg", "image/png"),
        "/sprite.svg": (b'<svg xmlns="http://www.w3.org/2000/svg"><symbol id="i"/></svg>',
                        "image/svg+xml"),
        "/set-1x.png": (PNG + b"s1", "image/png"),
        "/set-2x.png": (PNG + b"s2", "image/png"),
        "/a b.png": (PNG + b"space", "image/png"),
        "/q'uote.png": (PNG + b"quote", "image/png"),
        "/svgstyle.png": (PNG + b"svgstyle", "image/png"),
        "/attr-1.png": (PNG + b"attr1", "image/png"),
        "/attr-2.png": (PNG + b"attr2", "image/png"),
        "/print.css": (b"p{color:black}", "text/css"),
        "/layer.css": (b"p{margin:0}", "text/css"),
    }
    for path, (body, kind) in assets.items():
        cdn.page(path.replace(" ", "%20"), body, content_type=kind)
        cdn.page(path, body, content_type=kind)
    c = cdn.url("")
    proto_relative = c.removeprefix("http:")
    site.page("/style.css", f"""@import url("{c}/print.css") print;
@import "{c}/layer.css" layer(base) supports(display: grid);
@font-face {{ font-family: F; src: local("F"), url( '{c}/font.woff2' ) format("woff2"),
  url({c}/missing.woff) format("woff"); unicode-range: U+0000-00FF; }}
.h {{ background-image: image-set("{c}/set-1x.png" 1x, url({c}/set-2x.png) 2x); }}
.e {{ background: url("{c}/a b.png"), url({c}/q\\'uote.png); }}
""", content_type="text/css; charset=utf-8")
    site.page("/page", f"""<!doctype html><html><head>
<link rel="stylesheet" href="/style.css">
<link rel="preload" as="image" imagesrcset="{c}/hero-1x.png 1x, {c}/hero-2x.png 2x">
<link rel="preload" as="font" href="{c}/font.woff2" crossorigin>
<link rel="modulepreload" href="{proto_relative}/mod.js">
<link rel="icon" href="{c}/icon.png"><link rel="apple-touch-icon" href="{c}/touch.png">
</head><body>
<picture><source type="image/webp" srcset="{c}/webp.webp"><img src="{c}/fallback.png"></picture>
<video poster="{c}/poster.png" controls><source src="{c}/clip.mp4" type="video/mp4">
<track kind="subtitles" src="{c}/subs.vtt"></video>
<audio controls><source src="{c}/sound.ogg" type="audio/ogg"></audio>
<object data="{c}/obj.pdf" type="application/pdf"></object><embed src="{c}/embed.png">
<form><input type="image" src="{c}/button.png" alt="go"></form>
<svg><style>.x {{ background: url({c}/svgstyle.png) }}</style>
<image href="{c}/svg-image.png" width="1" height="1"/><use href="{c}/sprite.svg#i"/></svg>
<div style="background: url({c}/attr-1.png), url('{c}/attr-2.png')"></div>
</body></html>""")
    assert capture(archive, site.url("/page")) == "archived"
    stamp, html = replayed_page(client, site.url("/page"))
    assert c not in html.replace(f"mp_/{c}", "")  # nothing left pointing at the live CDN
    for path in [p for p in assets if p not in {"/a b.png"}] + ["/a%20b.png"]:
        status, data = served(client, stamp, cdn.url(path))
        assert status == 200, (path, status)
        assert data == assets[path.replace("%20", " ")][0], path
    status, _ = served(client, stamp, cdn.url("/missing.woff"))  # the archived 404, as sent
    assert status == 404


def test_redirecting_404_and_base_href_requisites(archive: Archive, site: Site, cdn: Site,
                                                   client: FlaskClient) -> None:
    """A requisite behind a cross-host redirect keeps both hops and replays through them;
    one that answered 404 is kept as a 404; a ``<base href>`` on another host moves them."""
    cdn.page("/new.png", PNG + b"new", content_type="image/png")
    cdn.page("/assets/rel.png", PNG + b"rel", content_type="image/png")
    site.redirect("/old.png", cdn.url("/new.png"), status=302)
    site.page("/p", f'<html><head><base href="{cdn.url("/assets/")}"></head><body>'
              f'<img src="{site.url("/old.png")}"><img src="rel.png">'
              f'<img src="{site.url("/gone.png")}"></body></html>')
    assert capture(archive, site.url("/p")) == "archived"
    urls = captured_urls(archive)
    assert site.url("/old.png") in urls and cdn.url("/new.png") in urls
    stamp = stamp_of(client, site.url("/p"))
    assert served(client, stamp, site.url("/old.png")) == (200, PNG + b"new")
    assert served(client, stamp, cdn.url("/assets/rel.png")) == (200, PNG + b"rel")
    assert served(client, stamp, site.url("/gone.png"))[0] == 404
    with archive.db.session() as session:
        gone = session.scalars(select(Capture).where(Capture.url == site.url("/gone.png"))).one()
    assert gone.status == 404


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate"])
def test_compressed_pages_find_their_requisites_and_keep_their_bytes(
        archive: Archive, site: Site, client: FlaskClient, coding: str) -> None:
    """A page sent gzip, zlib or raw deflate is read for requisites, stored as sent and
    replayed decoded once."""
    html = f'<html><body><img src="{site.url("/z.png")}"></body></html>'.encode()
    if coding == "gzip":
        body = gzip.compress(html)
    elif coding == "deflate":
        body = zlib.compress(html)
    else:
        raw = zlib.compressobj(wbits=-15)
        body = raw.compress(html) + raw.flush()
    site.page("/z.png", PNG + b"z", content_type="image/png")
    site.page("/zp", body, headers={"Content-Encoding": coding.removeprefix("raw-")})
    assert capture(archive, site.url("/zp")) == "archived"
    stamp, page = replayed_page(client, site.url("/zp"))
    assert f"mp_/{site.url('/z.png')}" in page
    assert served(client, stamp, site.url("/z.png")) == (200, PNG + b"z")
    raw_replay = client.get(f"/web/{stamp}id_/{site.url('/zp')}")
    assert raw_replay.data == html  # decoded once for the reader


def test_iframe_one_level_with_its_own_css_and_fonts(archive: Archive, site: Site,
                                                     cdn: Site, client: FlaskClient) -> None:
    """An iframe's document on another host brings its images, style sheet and what the
    sheet loads (fonts, backgrounds)."""
    cdn.page("/w.html", '<html><head><link rel="stylesheet" href="/w.css"></head>'
             '<body><img src="/w.png"></body></html>')
    cdn.page("/w.css", "@font-face{font-family:W;src:url(w.woff2)}"
             ".a{background:url(/w-bg.png)}", content_type="text/css")
    cdn.page("/w.woff2", WOFF2, content_type="font/woff2")
    cdn.page("/w.png", PNG + b"w", content_type="image/png")
    cdn.page("/w-bg.png", PNG + b"wbg", content_type="image/png")
    site.page("/p", f'<html><body><iframe src="{cdn.url("/w.html")}"></iframe></body></html>')
    assert capture(archive, site.url("/p")) == "archived"
    stamp = stamp_of(client, site.url("/p"))
    for path, data in (("/w.png", PNG + b"w"), ("/w.woff2", WOFF2),
                       ("/w-bg.png", PNG + b"wbg")):
        assert served(client, stamp, cdn.url(path)) == (200, data), path


def test_a_robots_txt_cut_short_does_not_let_a_disallowed_page_be_captured(
        tmp_path: Path) -> None:
    """robots.txt says ``User-agent: *`` / ``Disallow: /private/``, but the connection drops
    after its first line.  A cut body is kept ("disconnect"), but rules cut short may allow
    what the rest forbids: such a robots.txt is unreadable, which holds the capture back
    (retried soon), as RFC 9309 asks for an unreachable one."""
    robots = b"User-agent: *\nDisallow: /private/\n"

    def answer(method: str, path: str) -> bytes:
        if path == "/robots.txt":
            return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(robots) + robots[:14])
        body = b"<html><body><h1>Members only</h1><p>private minutes</p></body></html>"
        return (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body)

    server = RawSite(answer)
    settings = make_settings(tmp_path / "data")
    initialise(settings)
    try:
        with Archive.open(settings) as archive:
            [link_id] = add_links(archive, [server.url("/private/minutes.html")])
            outcome = capture_link(archive, link_id)
    finally:
        server.close()
    assert outcome != "archived", outcome


@pytest.mark.parametrize(("problem", "passing"), [
    ("HTTP 503", True), ("timeout: read timed out", True),
    ("robots.txt cut short (disconnect)", True), ("HTTP 404", False),
    ("connection_refused: refused", False), ("dns_error: no such host", False),
    ("forbidden_address: loopback address refused", False),
])
def test_which_unreadable_robots_txt_may_be_readable_in_hours(problem: str,
                                                              passing: bool) -> None:
    assert robots_module.passing_problem(problem) is passing


def test_after_a_failed_write_a_later_page_still_replays_the_style_sheet_it_shares(
        archive: Archive, client: object, site: Site) -> None:
    """A capture writes its page and style sheet, then its large image hits the full disk
    (WriteError): nothing of that capture is indexed.  The capturer had noted the style sheet
    as captured (``capture.requisite_reuse``) and the store its payload as written, so the
    next page of the site, captured once there was room again, neither fetched nor stored
    the style sheet and replayed without it; a failed capture now forgets them."""

    css = "body { color: #333; font-family: Georgia, serif; } h1 { color: #900; }"
    site.page("/static/site.css", css, content_type="text/css")
    site.page("/static/photo.png", b"\x89PNG\r\n\x1a\n" + os.urandom(200_000),
              content_type="image/png")
    site.page("/a.html", '<html><head><link rel="stylesheet" href="/static/site.css"></head>'
              '<body><h1>A</h1><img src="/static/photo.png"></body></html>')
    site.page("/b.html", '<html><head><link rel="stylesheet" href="/static/site.css"></head>'
              '<body><h1>B</h1><p>Another page of the site.</p></body></html>')
    [first, second] = add_links(archive, [site.url("/a.html"), site.url("/b.html")])
    with writes_fail_past(64 * 1024), pytest.raises(Exception, match="File too large"):
        capture_link(archive, first)
    assert capture_link(archive, second) == "archived"
    stamp = stamp_of(client, site.url("/b.html"))  # type: ignore[arg-type]
    status, body = served(client, stamp, site.url("/static/site.css"))  # type: ignore[arg-type]
    assert (status, body.decode()) == (200, css), (status, body[:200])
