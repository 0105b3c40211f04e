"""The web UI and JSON API in process, over an archive filled from a loopback web."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from werkzeug.wrappers import Response

from archiver.actions import ignore_domain
from archiver.archive import Archive
from archiver.demo.fixtureweb import Site
from archiver.errors import ConfigError, StorageError
from archiver.jobs import WorkKind, capture_link, run_due
from archiver.urls import canonicalize
from tests.conftest import discover_posts, make_settings, post
from tests.test_capture import add_link
from tests.test_jobs import add_links

PAGE = ('<html><head><link rel="stylesheet" href="/s.css"></head><body>'
        '<a href="/next">next</a><img src="img.png" srcset="a.png 1x, b.png 2x"></body></html>')


@pytest.fixture
def filled(archive: Archive, site: Site, tmp_path: Path) -> Site:
    """A folder source with one post citing two pages of ``site``, archived and checked."""
    site.page("/page", PAGE, headers={"Set-Cookie": "track=1", "X-Frame-Options": "DENY"})
    site.page("/gone", "no", status=404)
    discover_posts(archive, tmp_path / "posts", post(
        "A first post", "https://blog.example/first",
        f"Read [this page]({site.url('/page')}) and [that one]({site.url('/gone')})."))
    run_due(archive, WorkKind.CAPTURE)
    run_due(archive, WorkKind.CHECK)
    return site


def test_dashboard_counts_states(client: FlaskClient, filled: Site) -> None:
    page = client.get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "1 posts cite 2 links" in html
    assert 'href="/links?state=alive"' in html


def test_post_page_lists_references_with_states(client: FlaskClient, filled: Site) -> None:
    html = client.get("/posts/1").get_data(as_text=True)
    assert "A first post" in html
    assert "this page" in html and "that one" in html
    assert "state-alive" in html and "state-failing" in html
    assert f"/{filled.url('/page')}\">archived copy" in html


def test_posts_and_links_lists(client: FlaskClient, filled: Site) -> None:
    assert "A first post" in client.get("/posts").get_data(as_text=True)
    alive = client.get("/links?state=alive").get_data(as_text=True)
    assert filled.url("/page") in alive and filled.url("/gone") not in alive
    assert client.get("/links?state=bogus").status_code == 400


def test_the_links_page_pages_by_id_both_ways(archive: Archive) -> None:
    from web import create_app

    ids = add_links(archive, [f"http://host{n}.example/{n}" for n in range(7)])
    ignore_domain(archive, "host3.example")
    client = create_app(archive.settings.replace(web__page_size=2), archive).test_client()

    def shown(html: str) -> list[int]:
        return [int(found) for found in re.findall(r'href="/links/(\d+)"', html)]

    def follow(html: str, label: str) -> str | None:
        found = re.search(rf'href="([^"]+)">[^<]*{label}', html)
        return found.group(1).replace("&amp;", "&") if found else None

    html = client.get("/links").get_data(as_text=True)
    pages, backwards = [shown(html)], []
    assert follow(html, "previous") is None
    while (path := follow(html, "next")) is not None:
        html = client.get(path).get_data(as_text=True)
        pages.append(shown(html))
    while (path := follow(html, "previous")) is not None:
        html = client.get(path).get_data(as_text=True)
        backwards.append(shown(html))
    visible = [link_id for link_id in ids if link_id != ids[3]]
    assert pages == [visible[:2], visible[2:4], visible[4:]]
    assert backwards == pages[-2::-1]
    assert shown(client.get(f"/links?before={ids[0]}").get_data(as_text=True)) == []
    # Filters survive paging, and the last page has no next.
    html = client.get(f"/links?domain=host5.example&after={ids[0]}").get_data(as_text=True)
    assert shown(html) == [ids[5]] and follow(html, "next") is None


def test_link_page_shows_checks_and_captures(client: FlaskClient, filled: Site) -> None:
    html = client.get("/links/1").get_data(as_text=True)
    assert "A first post" in html
    assert ">ok<" in html
    assert ".warc.gz@" in html
    assert client.get("/links/999").status_code == 404
    assert "No post cites it any more" not in html


def test_a_link_no_post_cites_says_so(client: FlaskClient, archive: Archive) -> None:
    [link_id] = add_links(archive, ["https://example.org/taken-out"])
    html = client.get(f"/links/{link_id}").get_data(as_text=True)
    assert "No post cites it any more (it stays in the archive)." in html


def test_api(client: FlaskClient, filled: Site) -> None:
    links = client.get("/api/links").get_json()
    assert links["total"] == 2
    assert {row["state"] for row in links["items"]} == {"alive", "failing"}
    posts = client.get("/api/posts").get_json()
    assert posts["items"][0]["url"] == "https://blog.example/first"
    assert client.get("/api/links?post=1").get_json()["total"] == 2


def test_api_errors_share_one_shape(client: FlaskClient) -> None:
    for url in ("/api/links?state=nope", "/api/links?post=x", "/api/nothing"):
        response = client.get(url)
        body = response.get_json()
        assert response.status_code in {400, 404}
        assert set(body) == {"error"} and set(body["error"]) == {"status", "message"}
        assert body["error"]["status"] == response.status_code


def test_replay_rewrites_and_sandboxes(client: FlaskClient, filled: Site) -> None:
    latest = client.get(f"/web/{filled.url('/page')}")
    assert latest.status_code == 302
    target = latest.headers["Location"]
    stamp = target.split("/")[2]
    assert len(stamp) == 14 and stamp.isdigit()
    frame = client.get(target).get_data(as_text=True)
    assert f'src="/web/{stamp}mp_/{filled.url("/page")}"' in frame
    response = client.get(f"/web/{stamp}mp_/{filled.url('/page')}")
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"].startswith("sandbox; default-src ")
    assert "Set-Cookie" not in response.headers
    assert "X-Frame-Options" not in response.headers
    assert "track=1" not in str(response.headers)  # cookies are dropped, not passed on
    assert response.headers["Content-Length"] == str(len(response.data))
    html = response.get_data(as_text=True)
    base = filled.url("")
    assert f'href="/web/{stamp}mp_/{base}/s.css"' in html
    assert f'href="/web/{stamp}/{base}/next"' in html
    assert f'src="/web/{stamp}mp_/{base}/img.png"' in html
    assert f"/web/{stamp}mp_/{base}/b.png 2x" in html


def test_replay_finds_the_nearest_capture_for_a_partial_timestamp(
        client: FlaskClient, filled: Site) -> None:
    response = client.get(f"/web/2026/{filled.url('/page')}")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/" + filled.url("/page"))


def test_never_archived_is_not_fetched_live(client: FlaskClient, site: Site) -> None:
    site.page("/live", "live content")
    response = client.get(f"/web/20200101000000/{site.url('/live')}")
    assert response.status_code == 404
    assert "Not archived" in response.get_data(as_text=True)
    assert site.hits == {}


def archived_link_href(client: FlaskClient, link_id: int) -> str:
    """The "latest good capture" link the link's page offers."""
    html = client.get(f"/links/{link_id}").get_data(as_text=True)
    match = re.search(r'<a href="([^"]+)">latest good capture</a>', html)
    assert match, "the link's page offers no archived copy"
    return match.group(1).replace("&amp;", "&")


@pytest.mark.parametrize("path", [
    "/wiki/Whatever_Happened_to_Baby_Jane%3F",  # an encoded "?" in a title
    "/wiki/F%23_minor",  # an encoded "#"
    "/wiki/%2541",  # an encoded "%" (not an "A")
])
def test_an_address_with_an_encoded_question_mark_hash_or_percent_replays(
        archive: Archive, site: Site, client: FlaskClient, path: str) -> None:
    """The server decodes %3F, %23 and %25 in the path: replay must not read the decoded
    path as a query, a fragment or an escape, but find the archived address."""
    # The loopback site routes on the decoded path; this one answers whatever is asked.
    site.fallback = lambda _request: Response("<p>the article</p>", content_type="text/html")
    url = canonicalize(site.url(path))
    link_id = add_link(archive, url)
    assert capture_link(archive, link_id) == "archived"
    href = archived_link_href(client, link_id)
    frame = client.get(href)
    assert frame.status_code == 200, frame.get_data(as_text=True)[-400:]
    assert f'<{url}>; rel="original"' in frame.headers["Link"]
    document = client.get(href.replace("/http", "mp_/http", 1))
    assert document.status_code == 200
    assert document.data == b"<p>the article</p>"
    gate = client.get(f"/web/{url}")  # the TimeGate, and its redirect
    assert gate.headers["Location"].endswith(f"/{url}")
    # A server that passes no raw request (REQUEST_URI, RAW_URI): the decoded path will do.
    assert client.get(href, environ_overrides={"REQUEST_URI": "", "RAW_URI": ""}).status_code \
        == 200


def test_ui_security_headers(client: FlaskClient) -> None:
    response = client.get("/")
    assert "frame-ancestors" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_app_refuses_to_start_without_a_secret_key(tmp_path: Path) -> None:
    from web import create_app

    settings = make_settings(tmp_path / "empty")
    with pytest.raises(ConfigError, match="secret"):
        create_app(settings, archive=None)


@pytest.mark.parametrize("name", ["../archiver.sqlite3", "/etc/passwd", "sub/x.warc.gz",
                                  "../../x.warc.gz", "secret.key"])
def test_store_refuses_paths_outside_the_warc_folder(archive: Archive, name: str) -> None:
    with pytest.raises(StorageError):
        archive.store.path_of(name)


def test_replay_answers_byte_ranges_of_an_archived_video(client: FlaskClient, archive: Archive,
                                                         site: Site, tmp_path: Path) -> None:
    """A player seeks by asking for byte ranges: replay answers 206 with the archived bytes
    asked for, 416 for a range past the end, and the whole body without a Range header."""
    film = bytes(range(256)) * 400
    site.page("/film.webm", film, content_type="video/webm")
    discover_posts(archive, tmp_path / "posts", post(
        "Film", "https://blog.example/film", f"Watch [it]({site.url('/film.webm')})."))
    run_due(archive, WorkKind.CAPTURE)
    stamp = client.get(f"/web/{site.url('/film.webm')}").headers["Location"].split("/")[2]
    path = f"/web/{stamp}id_/{site.url('/film.webm')}"
    whole = client.get(path)
    assert whole.status_code == 200 and whole.data == film
    assert whole.headers["Accept-Ranges"] == "bytes"
    part = client.get(path, headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.data == film[1000:2000]
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(film)}"
    assert part.headers["Content-Length"] == "1000"
    tail = client.get(path, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.data == film[-10:]
    beyond = client.get(path, headers={"Range": f"bytes={len(film)}-"})
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{len(film)}"


def test_replay_of_a_capture_whose_warc_file_is_gone_says_so(client: FlaskClient,
                                                              archive: Archive,
                                                              filled: Site) -> None:
    """The storage's fault, said as such, without its paths: not the generic error page."""
    archive.store.close()
    for name in archive.store.files():
        archive.store.path_of(name).unlink()
    stamp = client.get(f"/web/{filled.url('/page')}").headers["Location"].split("/")[2]
    response = client.get(f"/web/{stamp}mp_/{filled.url('/page')}")
    assert response.status_code == 500
    text = response.get_data(as_text=True)
    assert "WARC file holding this archived copy is missing" in text
    assert str(archive.store.directory) not in text


def test_the_link_page_says_why_the_last_capture_failed(client: FlaskClient, archive: Archive,
                                                        site: Site, tmp_path: Path) -> None:
    """A link never archived says what its last capture attempt hit, and when it tries again."""
    site.page("/robots.txt", "busy", status=503, content_type="text/plain")
    site.page("/p", "<p>x</p>")
    discover_posts(archive, tmp_path / "posts", post(
        "P", "https://blog.example/p", f"[p]({site.url('/p')})."))
    run_due(archive, WorkKind.CAPTURE)
    page = client.get("/links/1").get_data(as_text=True)
    assert "Last capture attempt" in page and "<strong>failed</strong>" in page
    assert "robots.txt could not be read (HTTP 503)" in page and "next try" in page
