"""What readers' browsers use: the cross-origin /api/refs lookup, /embed.js (in a real headless
Chromium, on a blog served from another loopback origin) and a post's references page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from archiver.archive import Archive
from archiver.demo.fixtureweb import Site
from archiver.jobs import WorkKind, run_due
from archiver.models import IgnoredDomain
from tests.conftest import Server, discover_posts, post

RFC1123 = re.compile(r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$")


@pytest.fixture
def refs(archive: Archive, site: Site, tmp_path: Path) -> Site:
    """A post citing four pages of ``site``, captured then checked into these states:

    /alive: archived, alive; /dying: archived, then dead; /shaky: archived, then failing;
    /never: a 404 from the start (dead, and its capture is no archived copy).
    """
    for path in ("/alive", "/dying", "/shaky"):
        site.page(path, f"<html><body><p>The page at {path}.</p></body></html>")
    site.page("/never", "no", status=404)
    discover_posts(archive, tmp_path / "posts", post(
        "The Soviet Story", "https://blog.example/soviet",
        f"See [the film]({site.url('/alive')}), [the trailer]({site.url('/dying')}),\n"
        f"[a review]({site.url('/shaky')}) and [the newspaper]({site.url('/never')})."))
    run_due(archive, WorkKind.CAPTURE)
    run_due(archive, WorkKind.CHECK)  # every link's first check
    site.page("/dying", "gone", status=404)
    run_due(archive, WorkKind.CHECK, everything=True)
    run_due(archive, WorkKind.CHECK, everything=True)
    site.page("/shaky", "gone", status=404)
    run_due(archive, WorkKind.CHECK, everything=True)  # /dying: 3 failures; /shaky: 1
    return site


def get_refs(client: FlaskClient, *urls: str) -> Any:
    return client.get("/api/refs", query_string=[("url", url) for url in urls])


# --------------------------------------------------------------------------------------------
# /api/refs


def test_refs_reports_state_and_latest_archived_copy(client: FlaskClient, refs: Site) -> None:
    asked = [refs.url("/alive"), refs.url("/dying"), refs.url("/shaky"), refs.url("/never"),
             "https://unknown.example/page", "not a url", "ftp://files.example/x",
             refs.url("/alive").replace("http://", "HTTP://") + "#section"]
    response = get_refs(client, *asked)
    assert response.status_code == 200
    items = response.get_json()["items"]
    assert [item["url"] for item in items] == asked  # as asked, in order
    by_url = dict(zip(asked, items, strict=True))
    for path, state in (("/alive", "alive"), ("/dying", "dead"), ("/shaky", "failing")):
        item = by_url[refs.url(path)]
        assert item["state"] == state
        assert re.fullmatch(rf"http://localhost/web/\d{{14}}/{re.escape(refs.url(path))}",
                            item["archived_url"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", item["archived_at"])
        assert RFC1123.match(item["memento_datetime"])
        assert item["error"] is None
        stamp = item["archived_url"].split("/")[4]
        assert item["archived_at"].replace("-", "").replace(":", "").replace("T", "")[:14] \
            == stamp
    never = by_url[refs.url("/never")]
    assert (never["state"], never["archived_url"], never["archived_at"],
            never["memento_datetime"]) == ("dead", None, None, None)
    unknown = by_url["https://unknown.example/page"]
    assert (unknown["state"], unknown["archived_url"], unknown["error"]) == (None, None, None)
    for bad in ("not a url", "ftp://files.example/x"):
        assert by_url[bad]["state"] is None and by_url[bad]["archived_url"] is None
        assert by_url[bad]["error"].startswith("invalid URL")
    # Canonicalised before the lookup: scheme case and fragment do not matter.
    assert items[-1]["archived_url"] == by_url[refs.url("/alive")]["archived_url"]


def test_refs_is_public_cacheable_cross_origin_and_cookieless(
        client: FlaskClient, refs: Site) -> None:
    response = client.get("/api/refs", query_string={"url": refs.url("/alive")},
                          headers={"Origin": "https://blog.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert response.headers["Content-Type"].startswith("application/json")
    assert "Set-Cookie" not in response.headers
    assert "Cookie" not in response.headers.get("Vary", "")


def test_refs_with_a_session_cookie_still_sets_none(app: Flask, refs: Site) -> None:
    client = app.test_client()
    with client.session_transaction() as session:
        session["csrf"] = "token"
    response = client.get("/api/refs", query_string={"url": refs.url("/alive")})
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert "Cookie" not in response.headers.get("Vary", "")


def test_refs_preflight(client: FlaskClient) -> None:
    response = client.options("/api/refs", headers={
        "Origin": "https://blog.example", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "accept"})
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "GET" in response.headers["Access-Control-Allow-Methods"]
    assert response.headers["Access-Control-Allow-Headers"]
    assert "Set-Cookie" not in response.headers


def test_refs_errors_share_the_api_shape_and_stay_readable_cross_origin(
        client: FlaskClient) -> None:
    too_many = [f"https://x.example/{n}" for n in range(201)]
    for response in (get_refs(client, *too_many), client.get("/api/refs")):
        assert response.status_code == 400
        body = response.get_json()
        assert set(body) == {"error"} and body["error"]["status"] == 400
        assert body["error"]["message"]
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert response.headers["Cache-Control"] == "no-store"
    assert get_refs(client, *too_many[:200]).status_code == 200


def test_refs_uses_one_query_for_all_urls(archive: Archive, client: FlaskClient,
                                          refs: Site) -> None:
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    event.listen(archive.db.engine, "before_cursor_execute", record)
    try:
        urls = [refs.url(p) for p in ("/alive", "/dying", "/shaky", "/never")]
        urls += [f"https://unknown.example/{n}" for n in range(150)]
        assert get_refs(client, *urls).status_code == 200
    finally:
        event.remove(archive.db.engine, "before_cursor_execute", record)
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1


def test_refs_treats_ignored_domains_as_unknown(archive: Archive, client: FlaskClient,
                                                refs: Site) -> None:
    with archive.db.session() as session:
        session.add(IgnoredDomain(domain="127.0.0.1"))
    item = get_refs(client, refs.url("/alive")).get_json()["items"][0]
    assert (item["state"], item["archived_url"]) == (None, None)


# --------------------------------------------------------------------------------------------
# /embed.js and the references page


def test_embed_script_headers(client: FlaskClient) -> None:
    response = client.get("/embed.js")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/javascript; charset=utf-8"
    assert response.headers["Cache-Control"] == "public, max-age=3600"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["X-Content-Type-Options"] == "nosniff"  # fine: the type is right
    assert "Set-Cookie" not in response.headers
    assert b"/api/refs" in response.data
    etag = response.headers["ETag"]
    again = client.get("/embed.js", headers={"If-None-Match": etag})
    assert again.status_code == 304


def test_references_page_lists_every_copy(client: FlaskClient, refs: Site) -> None:
    response = client.get("/posts/1/references")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "The Soviet Story" in html
    for path in ("/alive", "/dying", "/shaky", "/never"):
        assert refs.url(path) in html
    assert "state-dead" in html and "state-failing" in html and "state-alive" in html
    assert len(re.findall(r'href="/web/\d{14}/http://127\.0\.0\.1:\d+/(?:alive|dying|shaky)"',
                          html)) == 3
    assert "error page, 404" in html  # /never's capture is listed, marked as no real copy
    assert client.get("/posts/99/references").status_code == 404


# --------------------------------------------------------------------------------------------
# embed.js in a real browser


BLOG = """<!doctype html>
<html><head><meta charset="utf-8"><title>Blog</title>
<script>document.addEventListener("archiver:done", function (e) {{ window.done = e.detail; }});
</script>
{script}
</head><body>
<nav><a id="outside" href="{alive}">the film, in the sidebar</a></nav>
<article>
<p>See <a id="alive" href="{alive}">the film</a>, <a id="dying" href="{dying}">the
  trailer</a>, <a id="shaky" href="{shaky}">a review</a>, <a id="never" href="{never}">the
  newspaper</a>, <a id="unknown" href="https://unknown.example/x">elsewhere</a> and
  <a id="internal" href="/about">about me</a>.</p>
</article>
</body></html>
"""


def blog_page(refs: Site, script: str) -> str:
    return BLOG.format(script=script, alive=refs.url("/alive"), dying=refs.url("/dying"),
                       shaky=refs.url("/shaky"), never=refs.url("/never"))


LINKS_JS = """() => Array.from(document.querySelectorAll("a")).map(a => ({
    id: a.id, cls: a.className, href: a.getAttribute("href"), text: a.textContent,
    label: a.getAttribute("aria-label"), title: a.title,
    original: a.dataset.originalurl || null, version: a.dataset.versionurl || null,
    date: a.dataset.versiondate || null,
    after: a.nextElementSibling ? a.nextElementSibling.className : null}))"""


def open_blog(browser: Any, url: str) -> tuple[dict[str, dict[str, Any]], list[Any], list[str]]:
    page = browser.new_page()
    errors: list[Any] = []
    requests: list[str] = []

    def on_error(error: Any) -> None:  # playwright cannot take a builtin method as handler
        errors.append(error)

    page.on("pageerror", on_error)

    def on_console(message: Any) -> None:
        if message.type == "error" and not message.location["url"].endswith("/favicon.ico"):
            errors.append(f"{message.text} ({message.location['url']})")

    page.on("console", on_console)
    page.on("request", lambda request: requests.append(request.url))
    page.goto(url)
    page.wait_for_function("() => window.done !== undefined", timeout=10_000)
    links = page.evaluate(LINKS_JS)
    page.close()
    by_id = {link["id"] or f"copy{n}": link for n, link in enumerate(links)}
    return by_id, errors, requests


def test_embed_script_in_a_browser(app: Flask, refs: Site, browser: Any) -> None:
    with Server(app) as archive_server, Site("blog") as blog:
        tag = (f'<script src="{archive_server.origin}/embed.js" data-scope="article" '
               f'defer></script>')
        blog.page("/post.html", blog_page(refs, tag))
        links, errors, requests = open_blog(browser, blog.url("/post.html"))
        hosts = {blog.base_url.split("/")[2], archive_server.origin.split("/")[2]}
    assert errors == []
    assert {url.split("/")[2] for url in requests} == hosts  # the blog and the archive only
    assert len([url for url in requests if "/api/refs?" in url]) == 1
    for name in ("alive", "dying", "shaky"):
        link = links[name]
        assert link["original"] == refs.url(f"/{name}")
        assert re.fullmatch(rf"{archive_server.origin}/web/\d{{14}}/"
                            rf"{re.escape(refs.url('/' + name))}", link["version"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\d", link["date"])
    for name in ("never", "unknown", "internal", "outside"):  # no copy, own site, out of scope
        assert links[name]["version"] is None and links[name]["date"] is None
    copies = [link for link in links.values() if link["cls"] == "archiver-copy"]
    assert len(copies) == 1  # only the dead link gets the visible affordance by default
    copy = copies[0]
    assert links["dying"]["after"] == "archiver-copy"
    assert copy["href"] == links["dying"]["version"]
    assert copy["text"] == "[archived]"
    assert copy["label"] == "Archived copy of the trailer"
    assert copy["title"] == f"Archived copy, {links['dying']['date']}"


def test_embed_script_options_in_a_browser(app: Flask, refs: Site, browser: Any) -> None:
    with Server(app) as archive_server, Site("blog") as blog:
        tag = (f'<script src="{archive_server.origin}/embed.js" '
               f'data-archive="{archive_server.origin}/" data-show="failing" '
               f'data-label="(archived copy)" defer></script>')
        blog.page("/post.html", blog_page(refs, tag))
        links, errors, _ = open_blog(browser, blog.url("/post.html"))
    assert errors == []
    assert links["outside"]["version"] == links["alive"]["version"] is not None  # no scope
    assert links["dying"]["after"] == links["shaky"]["after"] == "archiver-copy"
    assert links["alive"]["after"] != "archiver-copy"
    labels = {link["text"] for link in links.values() if link["cls"] == "archiver-copy"}
    assert labels == {"(archived copy)"}


def test_embed_script_does_nothing_when_the_archive_is_unreachable(
        app: Flask, refs: Site, browser: Any) -> None:
    with Server(app) as archive_server, Site("blog") as blog:
        closed = Site("closed").start()
        dead_origin = closed.base_url
        closed.stop()  # nothing listens there any more
        tag = (f'<script src="{archive_server.origin}/embed.js" data-archive="{dead_origin}" '
               f'defer></script>')
        blog.page("/post.html", blog_page(refs, tag))
        links, errors, _ = open_blog(browser, blog.url("/post.html"))
    # The browser logs the refused connection; the script itself throws nothing.
    assert all(isinstance(error, str) and "ERR_CONNECTION_REFUSED" in error for error in errors)
    assert all(link["version"] is None and link["cls"] != "archiver-copy"
               for link in links.values())
