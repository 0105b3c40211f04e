"""Replay fidelity benchmark: archived pages in headless Chromium, every request recorded.

Starts a small fixture web on three loopback hosts: the blog (127.0.0.1), a CDN (127.0.0.2) and
an embed host (127.0.0.3).  Its pages use what a rendered page needs: images with ``srcset``
(``x`` and ``w`` descriptors, protocol-relative and entity-encoded URLs), ``<picture>``, an
SVG ``<image>``, a video poster, style sheets that ``@import`` others across hosts, a web font
from ``@font-face``, ``url()`` in ``<style>`` and in ``style`` attributes, an image behind a
redirect, a ``<base href>``, a ``crossorigin`` image, iframes on the same host and on another
one (each with its own requisites) and a script that tries to reach the live web.

1. It loads every page **live** in Chromium and notes what the browser loaded: what a reader
   of the original needed.
2. It captures the pages one at a time with our pipeline (``capture_link``) into a new data
   folder.  A page's **archived requisites** are the index rows (response, revisit) that its
   capture added, other than the page itself.
3. It serves the archive with ``archiver web`` (its own process, as a user starts it), once
   with the default settings (archived scripts do not run) and once with
   ``web.replay_scripts = true``, and opens each page's frame view ``/web/<ts>/<url>`` in a
   new browser context (an empty cache), recording every request of the page and of its
   iframes, every answer and every failure.

Per page and in total it prints:

* requests that left the archive: http(s) requests the browser made to any origin other than
  the archive's (target 0), and the requests the fixture sites received while replay ran (the
  server-side truth, target 0); attempts that the archived document's Content Security Policy
  refused are counted apart;
* the share of archived requisites the browser loaded from the archive (target at least 95%):
  a requisite is loaded when the archive answered its URL with the archived status (for a 200:
  with the archived media type, so an HTML page served for an image does not count);
* the same share over the archived requisites the live page also loaded, and each miss with a
  reason.

This is a benchmark, not a test: it prints figures and exits 0.

Usage: python bench/replay_fidelity.py [--modes default,scripts] [--show-requests]

Only loopback addresses are contacted; every page load and wait is bounded by a timeout.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from replay_vs_pywb import capture_stamps, running_ours, write_config
from sqlalchemy import func, select
from werkzeug.wrappers import Request, Response

from archiver.archive import Archive
from archiver.clock import utcnow
from archiver.demo.fixtureweb import Site
from archiver.jobs import capture_link
from archiver.models import Capture, Link
from archiver.urls import host_of, url_key

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
TARGET_SHARE = 0.95
REPLAY_PATH = re.compile(r"^/web/(\d{1,14})([a-z]{2}_)?/(.*)$", re.S)
SCHEME_SLASH = re.compile(r"^(https?):/+", re.I)
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
                    "0000000d49444154789c63f8cfc0f01f0005000201e0a7d5b50000000049454e44ae426082")
GIF = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c000000000100"
                    "01000002024401003b")
WOFF2 = b"wOF2" + bytes(60)  # not a usable font: the browser still fetches it (and says so)
PROSE = ("An archive keeps what a page needed to render: its images, its style sheets, the "
         "fonts they load and the frames it embeds. ")


# -- the fixture web -------------------------------------------------------------------------


class FixtureSite:
    """A loopback site with a table of resources; counts every request it receives."""

    def __init__(self, name: str, address: str) -> None:
        self.site = Site(name, host=address)
        self.site.fallback = self._answer
        self.assets: dict[str, tuple[int, bytes, dict[str, str]]] = {}
        self._lock = threading.Lock()
        self.hits: Counter[str] = Counter()

    @property
    def base(self) -> str:
        return self.site.base_url

    def add(self, path: str, body: bytes | str, content_type: str,
            headers: dict[str, str] | None = None) -> str:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.assets[path] = (200, data, {"Content-Type": content_type, **(headers or {})})
        return self.base + path

    def redirect(self, path: str, target: str) -> None:
        self.assets[path] = (301, b"", {"Location": target})

    def _answer(self, request: Request) -> Response:
        with self._lock:
            self.hits[request.full_path.rstrip("?")] += 1
        status, body, headers = self.assets.get(request.path, (404, b"not found",
                                                               {"Content-Type": "text/plain"}))
        return Response(body, status=status, headers=headers)


def _page(title: str, head: str, body: str) -> str:
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{title}</title>\n{head}\n</head>\n<body>\n<h1>{title}</h1>\n"
            f"<p>{PROSE * 3}</p>\n{body}\n<p>{PROSE * 2}</p>\n"
            '<p><a href="/about.html">About</a> <a href="https://example.org/cited">a cited '
            "page</a> (links, not requisites)</p>\n</body></html>\n")


def build_fixture(blog: FixtureSite, cdn: FixtureSite, embed: FixtureSite) -> list[str]:
    """Fill the started sites; return the page URLs, in capture order."""
    b, c, e = blog.base, cdn.base, embed.base
    cdn_host = c.removeprefix("http:")
    # The blog's style sheet: imports a font sheet from the CDN and a layout sheet, and has a
    # background image; the font sheet's @font-face is relative to the CDN.
    blog.add("/static/site.css", f'@import url("{c}/fonts/fonts.css");\n'
             '@import "layout.css";\n'
             "body { font-family: Body, serif; margin: 2em }\n"
             "header { height: 40px; background: url(/static/img/header.png) repeat-x }\n",
             "text/css")
    blog.add("/static/layout.css", ".hero { height: 80px; background-image: "
             'url("../img/hero.png") }\n.card { border: 1px solid #ccc }\n', "text/css")
    cdn.add("/fonts/fonts.css", "@font-face { font-family: Body; "
            'src: url(body.woff2) format("woff2") }\n', "text/css")
    # Fonts are fetched with CORS: a CDN serving them to other sites says so.
    cdn.add("/fonts/body.woff2", WOFF2, "font/woff2", {"Access-Control-Allow-Origin": "*"})
    blog.add("/static/img/header.png", PNG + b"header", "image/png")
    blog.add("/img/hero.png", PNG + b"hero", "image/png")
    blog.add("/static/extra.css", ".note { background: url(/img/note.png) }\n", "text/css")
    blog.add("/img/note.png", PNG + b"note", "image/png")
    for name in ("a", "b", "d", "narrow", "wide", "box", "inline", "svg", "poster", "new",
                 "logo", "fig-640", "fig-1280", "frame", "widget"):
        blog.add(f"/img/{name}.png", PNG + name.encode(), "image/png")
    for name in ("b-2x", "c", "inline-cdn", "photo"):
        cdn.add(f"/img/{name}.png", PNG + name.encode(), "image/png")
    blog.redirect("/img/moved.png", f"{b}/img/new.png")
    header = ('<link rel="stylesheet" href="/static/site.css">\n'
              '<header><img src="/img/logo.png" alt="logo" width="40" height="40"></header>')
    pages = []
    pages.append(blog.add("/articles/images.html", _page("Images", "", f"""{header}
<p><img src="/img/a.png" alt="a"></p>
<p><img src="/img/b.png" srcset="/img/b.png 1x, {cdn_host}/img/b-2x.png 2x" alt="b"></p>
<p><img src="{c}/img/c.png?v=3&amp;w=640" alt="c"></p>
<p><img src="../img/d.png" alt="d"></p>
<picture><source media="(min-width: 3000px)" srcset="/img/wide.png">
<img src="/img/narrow.png" alt="narrow"></picture>
<svg width="20" height="20"><image href="/img/svg.png" width="20" height="20"/></svg>
<p><img src="/img/moved.png" alt="behind a redirect"></p>"""), "text/html; charset=utf-8"))
    pages.append(blog.add("/articles/styles.html", _page("Styles", """<style>
@import url("/static/extra.css");
.box { width: 20px; height: 20px; background: url('/img/box.png') }
</style>""", f"""{header}
<div class="hero"></div><p class="note">A note.</p><div class="box"></div>
<div style="width:20px;height:20px;background-image: url(&quot;/img/inline.png&quot;)"></div>
<div style="width:20px;height:20px;background:url({c}/img/inline-cdn.png)"></div>"""),
        "text/html; charset=utf-8"))
    blog.add("/embed/local.html", """<!doctype html><html><head>
<link rel="stylesheet" href="/embed/embed.css"></head><body><div class="framed"></div>
<img src="/img/frame.png" alt="in a frame"></body></html>""", "text/html; charset=utf-8")
    blog.add("/embed/embed.css", ".framed { height: 10px; background: url(/img/widget.png) }\n",
             "text/css")
    embed.add("/widget.html", """<!doctype html><html><head><style>
body { background: url(/widget-bg.png) }</style></head><body>
<img src="/widget.png" alt="widget"></body></html>""", "text/html; charset=utf-8")
    embed.add("/widget.png", PNG + b"embed-widget", "image/png")
    embed.add("/widget-bg.png", PNG + b"embed-bg", "image/png")
    pages.append(blog.add("/articles/frames.html", _page("Frames", "", f"""{header}
<iframe src="/embed/local.html" width="300" height="100"></iframe>
<iframe src="{e}/widget.html" width="300" height="100"></iframe>"""),
        "text/html; charset=utf-8"))
    pages.append(blog.add("/articles/article.html", _page("An article", "", f"""{header}
<div class="hero"></div>
<figure><img src="/img/fig-1280.png" srcset="/img/fig-640.png 640w, /img/fig-1280.png 1280w"
 sizes="(max-width: 700px) 100vw, 700px" alt="figure"><figcaption>A figure</figcaption></figure>
<figure><img src="{c}/img/photo.png" alt="photo"></figure>
<video poster="/img/poster.png" width="60" height="40" controls></video>
<iframe src="{e}/widget.html" width="300" height="100"></iframe>"""),
        "text/html; charset=utf-8"))
    for name in ("base-1", "base-2"):
        blog.add(f"/static/pics/{name}.png", PNG + name.encode(), "image/png")
    cdn.add("/img/cors.png", PNG + b"cors", "image/png", {"Access-Control-Allow-Origin": "*"})
    pages.append(blog.add("/articles/head.html", _page(
        "Base and CORS", '<base href="/static/">\n<link rel="stylesheet" href="site.css">', f"""
<p><img src="pics/base-1.png" alt="relative to the base"></p>
<p><img src="./pics/base-2.png" alt="relative to the base too"></p>
<p><img src="{c}/img/cors.png" crossorigin="anonymous" alt="a CORS image"></p>"""),
        "text/html; charset=utf-8"))
    blog.add("/static/app.js", f"""document.documentElement.className = "js";
var img = new Image(); img.src = "{c}/img/beacon.gif"; document.body.appendChild(img);
fetch("{c}/api/data.json").then(function (r) {{ return r.text(); }}).catch(function () {{}});
var late = document.createElement("img"); late.src = "/img/added-by-script.png";
document.body.appendChild(late);
""", "text/javascript")
    cdn.add("/img/beacon.gif", GIF, "image/gif")
    cdn.add("/api/data.json", '{"live": true}', "application/json")
    blog.add("/img/added-by-script.png", PNG + b"js", "image/png")
    pages.append(blog.add("/articles/scripts.html", _page(
        "Scripts", '<script src="/static/app.js" defer></script>', f"""{header}
<p><img src="/img/a.png" alt="a again"></p>"""), "text/html; charset=utf-8"))
    return pages


# -- capture ---------------------------------------------------------------------------------


@dataclass
class Requisite:
    url: str
    status: int | None
    mime: str
    record_type: str


@dataclass
class Archived:
    url: str
    requisites: dict[str, Requisite]  # by url_key


def capture_pages(archive: Archive, pages: list[str]) -> dict[str, Archived]:
    """Capture each page in turn; the index rows its capture added are its requisites."""
    now = utcnow()
    with archive.db.session() as session:
        links = [Link(url=url, url_key=url_key(url), host=host_of(url), next_capture_at=now)
                 for url in pages]
        session.add_all(links)
        session.flush()
        ids = [link.id for link in links]
    found: dict[str, Archived] = {}
    for url, link_id in zip(pages, ids, strict=True):
        with archive.db.session() as session:
            before = session.scalar(select(func.max(Capture.id))) or 0
        outcome = capture_link(archive, link_id)
        with archive.db.session() as session:
            rows = session.scalars(select(Capture).where(Capture.id > before)
                                   .order_by(Capture.id)).all()
            requisites = {url_key(row.url): Requisite(row.url, row.status, _media(row.mime),
                                                      row.record_type)
                          for row in rows if url_key(row.url) != url_key(url)}
        if outcome != "archived":
            print(f"  {url}: capture {outcome}")
        found[url] = Archived(url, requisites)
    archive.store.close()
    return found


def _media(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


# -- the browser -----------------------------------------------------------------------------


@dataclass
class Visit:
    """What the browser did for one page."""

    requests: list[str] = field(default_factory=list)
    answers: list[tuple[str, int, str]] = field(default_factory=list)  # url, status, media
    failures: list[tuple[str, str]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # console: CSP violations
    console: list[str] = field(default_factory=list)
    error: str = ""


# Readers' screens (width, height in CSS pixels, device pixels per CSS pixel): an ordinary
# laptop, and a wide high-density one, so that srcset and <picture> alternatives the archive
# keeps for other screens are asked for too. Each screen is its own browser whose window has
# that size and scale (--window-size, --force-device-scale-factor), not an emulated viewport:
# Chromium runs a sandboxed iframe (every replayed document is one) in a process of its own,
# and Playwright's device_scale_factor emulation never reaches that process, so the document
# saw devicePixelRatio 1 and took the 1x candidate of a srcset on the "2x" screen, where the
# live page (no sandbox) took the 2x one. A real reader's screen scale holds in every frame.
SCREENS = ((1280, 800, 1), (3840, 2160, 2))


def launch_screens(playwright: Any) -> list[Any]:
    """One headless Chromium per screen in SCREENS, its window that screen."""
    return [playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=[*CHROMIUM_ARGS, f"--window-size={width},{height}",
              f"--force-device-scale-factor={scale}"])
        for width, height, scale in SCREENS]


def describe_screens(browsers: list[Any]) -> str:
    """What each browser's page sees: CSS width x height @ devicePixelRatio."""
    seen = []
    for browser in browsers:
        context = browser.new_context(no_viewport=True)
        try:
            width, height, ratio = context.new_page().evaluate(
                "[innerWidth, innerHeight, devicePixelRatio]")
        finally:
            context.close()
        seen.append(f"{width}x{height} @{ratio:g}x")
    return ", ".join(seen)


def visit(browsers: list[Any], url: str, timeout: float) -> Visit:
    """Open ``url`` on every screen (one browser each) and record every request of all
    visits."""
    merged = Visit()
    for browser in browsers:
        seen = _visit_once(browser, url, timeout)
        merged.requests += seen.requests
        merged.answers += seen.answers
        merged.failures += seen.failures
        merged.refused += seen.refused
        merged.console += seen.console
        merged.error = merged.error or seen.error
    return merged


def _visit_once(browser: Any, url: str, timeout: float) -> Visit:
    """Open ``url`` in a new context (empty cache) and record every request until quiet."""
    seen = Visit()
    context = browser.new_context(no_viewport=True)  # the window's own size and scale
    try:
        context.on("request", lambda request: seen.requests.append(request.url))
        context.on("response", lambda response: seen.answers.append(
            (response.url, response.status, _media(response.headers.get("content-type")))))
        context.on("requestfailed", lambda request: seen.failures.append(
            (request.url, str(request.failure))))
        page = context.new_page()

        def on_console(message: Any) -> None:
            text = message.text
            seen.console.append(text)
            if "violates the following Content Security Policy" in text:
                seen.refused.append(text)

        page.on("console", on_console)
        try:
            page.goto(url, wait_until="load", timeout=timeout * 1000)
        except Exception as exc:  # a page that never loads is a finding, not a crash
            seen.error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        try:
            page.wait_for_load_state("networkidle", timeout=timeout * 1000)
        except Exception:
            seen.error = seen.error or "network never went idle"
        page.wait_for_timeout(300)
    finally:
        context.close()
    return seen


def original_of(archive_url: str, origin: str) -> str | None:
    """The archived URL a replay URL on ``origin`` asks for (None if it is not replay)."""
    if not archive_url.startswith(origin + "/"):
        return None
    parts = urlsplit(archive_url)
    match = REPLAY_PATH.match(parts.path)
    if match is None:
        return None
    url = SCHEME_SLASH.sub(lambda m: m.group(1).lower() + "://", match.group(3))
    if "://" not in url:
        url = "http://" + url
    return f"{url}?{parts.query}" if parts.query else url


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


# -- measuring -------------------------------------------------------------------------------


@dataclass
class PageResult:
    url: str
    archived: int = 0
    loaded: int = 0
    needed: int = 0  # archived requisites the live page loaded too
    needed_loaded: int = 0
    off_origin: list[str] = field(default_factory=list)  # requests to another origin
    left: list[str] = field(default_factory=list)  # ... that CSP did not block
    refused: int = 0  # CSP violations the console reported
    requests: int = 0
    misses: list[str] = field(default_factory=list)
    error: str = ""


def measure(archived: Archived, live: set[str], seen: Visit, origin: str) -> PageResult:
    result = PageResult(archived.url, requests=len(seen.requests), error=seen.error,
                        refused=len(seen.refused))
    blocked = {u for u, why in seen.failures if why in ("csp", "net::ERR_BLOCKED_BY_CSP")}
    result.off_origin = [u for u in seen.requests
                         if u.lower().startswith(("http:", "https:")) and origin_of(u) != origin]
    result.left = [u for u in result.off_origin if u not in blocked]
    answered: dict[str, list[tuple[int, str]]] = {}
    for answer_url, status, media in seen.answers:
        original = original_of(answer_url, origin)
        if original is not None:
            answered.setdefault(url_key(original), []).append((status, media))
    asked = {url_key(o) for o in (original_of(u, origin) for u in seen.requests) if o}
    failed = {url_key(o): why for o, why in
              ((original_of(u, origin), why) for u, why in seen.failures) if o}
    for key, requisite in archived.requisites.items():
        result.archived += 1
        wanted = requisite.status or 200
        answers = answered.get(key, [])
        ok = any(status == wanted and (wanted != 200 or not requisite.mime
                                       or media == requisite.mime)
                 for status, media in answers)
        needed = key in live
        result.needed += needed
        if ok:
            result.loaded += 1
            result.needed_loaded += needed
            continue
        if key in failed:
            why = f"failed: {failed[key]}"
        elif answers:
            why = "answered " + ", ".join(f"{s} {m}" for s, m in answers) + \
                  f" (archived: {wanted} {requisite.mime})"
        elif key in asked:
            why = "asked, no answer"
        else:
            why = "never asked for"
        live_note = "" if needed else "; the live page did not load it either"
        result.misses.append(f"{requisite.url} [{requisite.record_type} {wanted} "
                             f"{requisite.mime}]: {why}{live_note}")
    return result


def live_loads(browsers: list[Any], pages: list[str], timeout: float) -> dict[str, set[str]]:
    """For each page, the URL keys the browser loaded (any answer below 400) from the live
    fixture web."""
    loaded = {}
    for url in pages:
        seen = visit(browsers, url, timeout)
        loaded[url] = {url_key(u) for u, status, _m in seen.answers if status < 400}
        if seen.error:
            print(f"  live {url}: {seen.error}")
    return loaded


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, ["-" * w for w in widths], *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True))
              .rstrip())


def report(mode: str, results: list[PageResult], site_hits: Counter[str],
           show_misses: bool) -> None:
    print(f"\n== replay, {mode} ==")
    rows = []
    for r in results:
        rows.append([urlsplit(r.url).path, str(r.requests), str(len(r.off_origin)),
                     str(len(r.left)), str(r.refused),
                     f"{r.loaded}/{r.archived}", pct(r.loaded, r.archived),
                     f"{r.needed_loaded}/{r.needed}", pct(r.needed_loaded, r.needed),
                     r.error])
    archived = sum(r.archived for r in results)
    loaded = sum(r.loaded for r in results)
    needed = sum(r.needed for r in results)
    needed_loaded = sum(r.needed_loaded for r in results)
    left = sum(len(r.left) for r in results)
    refused = sum(r.refused for r in results)
    off_origin = sum(len(r.off_origin) for r in results)
    rows.append(["TOTAL", str(sum(r.requests for r in results)), str(off_origin), str(left),
                 str(refused),
                 f"{loaded}/{archived}", pct(loaded, archived), f"{needed_loaded}/{needed}",
                 pct(needed_loaded, needed), ""])
    print_table(["page", "requests", "off origin", "left archive", "CSP violations",
                 "requisites loaded",
                 "share", "needed live: loaded", "share", "note"], rows)
    share = loaded / archived if archived else 0.0
    print(f"requests to another origin: {off_origin}, of which CSP blocked "
          f"{off_origin - left}; requests leaving the archive: {left} (target 0) "
          f"{'ok' if left == 0 else 'MISSED'}; fixture sites hit during replay: "
          f"{sum(site_hits.values())} (target 0); archived requisites loaded: "
          f"{pct(loaded, archived)} (target {TARGET_SHARE:.0%}) "
          f"{'ok' if share >= TARGET_SHARE else 'MISSED'}; of those the live page loaded: "
          f"{pct(needed_loaded, needed)}; CSP violations reported: {refused}")
    for r in results:
        for url in r.off_origin:
            print(f"  {'LEFT' if url in r.left else 'blocked by CSP'} "
                  f"{urlsplit(r.url).path}: {url}")
    for path, count in sorted(site_hits.items()):
        print(f"  SITE HIT during replay: {path} x{count}")
    if show_misses:
        for r in results:
            for miss in r.misses:
                print(f"  miss {urlsplit(r.url).path}: {miss}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--modes", default="default,scripts",
                        help="replay settings to run: default (archived scripts off) and/or "
                             "scripts (web.replay_scripts = true)")
    parser.add_argument("--timeout", type=float, default=15,
                        help="seconds a page may take to load, and to go quiet (default 15)")
    parser.add_argument("--show-requests", action="store_true",
                        help="print every request the browser made on replay")
    parser.add_argument("--archiver-cmd", default="",
                        help="command that runs our CLI (default: the archiver next to this "
                             "Python)")
    args = parser.parse_args(argv)
    args.mode_names = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.mode_names or set(args.mode_names) - {"default", "scripts"}:
        parser.error("--modes takes default, scripts or both")
    if not 1 <= args.timeout <= 120:
        parser.error("need a timeout of 1..120 s")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("playwright is not installed (`pip install -e '.[dev]'`); nothing measured")
        return 0
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing (apt-get install chromium); nothing measured")
        return 0
    sites = [FixtureSite("blog", "127.0.0.1"), FixtureSite("cdn", "127.0.0.2"),
             FixtureSite("embed", "127.0.0.3")]
    with tempfile.TemporaryDirectory(prefix="bench-fidelity-") as scratch, \
            sync_playwright() as playwright:
        work = Path(scratch)
        browsers = launch_screens(playwright)
        try:
            for site in sites:
                site.site.start()
            pages = build_fixture(*sites)
            print(f"{len(pages)} pages on {', '.join(s.base for s in sites)}; Chromium "
                  f"{browsers[0].version}; {os.cpu_count()} CPU cores, load average "
                  f"{os.getloadavg()[0]:.1f}; screens {describe_screens(browsers)}")
            live = live_loads(browsers, pages, args.timeout)
            config = work / "archiver.toml"
            settings = write_config(config, work / "data")
            started = time.monotonic()
            with Archive.open(settings) as archive:
                archived = capture_pages(archive, pages)
            stamps = capture_stamps(settings, pages)
            print(f"captured in {time.monotonic() - started:.1f} s; archived requisites per "
                  "page: " + ", ".join(f"{urlsplit(u).path} {len(a.requisites)}"
                                       for u, a in archived.items()))
            for mode in args.mode_names:
                mode_config = config
                if mode == "scripts":
                    mode_config = work / "archiver-scripts.toml"
                    mode_config.write_text(config.read_text(encoding="utf-8")
                                           + "[web]\nreplay_scripts = true\n", encoding="utf-8")
                for site in sites:
                    site.hits.clear()
                results = []
                with running_ours(mode_config, work, args.archiver_cmd) as server:
                    for url in pages:
                        if url not in stamps:
                            results.append(PageResult(url, error="not captured"))
                            continue
                        seen = visit(browsers, f"{server.base}/web/{stamps[url]}/{url}",
                                     args.timeout)
                        if args.show_requests:
                            print(f"-- {mode} {urlsplit(url).path}")
                            for u, status, media in seen.answers:
                                print(f"   {status} {media or '-'} {u}")
                            for u, why in seen.failures:
                                print(f"   FAILED {why} {u}")
                            for text in seen.console:
                                print(f"   console: {text[:200]}")
                        results.append(measure(archived[url], live[url], seen, server.base))
                hits: Counter[str] = Counter()
                for site in sites:
                    for path, count in site.hits.items():
                        hits[site.base + path] += count
                report("archived scripts off (default)" if mode == "default"
                       else "web.replay_scripts = true", results, hits, show_misses=True)
        finally:
            for browser in browsers:
                browser.close()
            for site in sites:
                site.site.stop()
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end. 'left archive' = http(s) "
          "requests the browser made to an origin other than the archive's; 'needed live' = "
          "archived requisites that the browser also loaded from the live page.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
