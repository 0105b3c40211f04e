"""XML sitemaps and sitemap indexes: every listed page is read like a single post (an
index's sitemaps of category, tag and author archives are not read)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element

from archiver.errors import SourceError
from archiver.net.client import HttpClient
from archiver.sources.common import (
    PostData,
    canonical_or_raw,
    fetch_document,
    local_name,
    parse_xml,
    to_utc,
)
from archiver.sources.page import read_page
from archiver.urls import FETCHABLE_SCHEMES, resolve, scheme_of

log = logging.getLogger(__name__)

SITEMAP_ROOTS = frozenset({"urlset", "sitemapindex"})
MAX_DEPTH = 3            # sitemap indexes nested deeper than this are not followed
MAX_CHILD_SITEMAPS = 50  # per index
MAX_PAGES = 5000         # per sitemap
# wp-sitemap-taxonomies-category-1.xml, wp-sitemap-users-1.xml (WordPress 5.5+);
# category-sitemap.xml, post_tag-sitemap2.xml, author-sitemap.xml (Yoast, Rank Math).
_ARCHIVE_SITEMAP_RE = re.compile(
    r"wp-sitemap-(?:taxonomies|users)-.*|.*(?:category|tag|author)-sitemap.*", re.IGNORECASE)


@dataclass(frozen=True)
class _Entry:
    loc: str
    lastmod: datetime | None


def read_sitemap(client: HttpClient, url: str) -> Iterator[PostData]:
    """Yield every page a sitemap (or sitemap index) lists; unreadable pages are skipped."""
    seen: set[str] = set()
    for entry in _pages(client, url, depth=0, visited=set()):
        if entry.loc in seen:
            continue
        seen.add(entry.loc)
        try:
            post = read_page(client, entry.loc)
        except SourceError as exc:
            log.warning("skipping %s listed in %s: %s", entry.loc, url, exc)
            continue
        if post.published_at is None and entry.lastmod is not None:
            post = replace(post, published_at=entry.lastmod)
        listed = canonical_or_raw(entry.loc)
        if listed != post.url:  # /posts/a redirected to /posts/a/, or http:// to https://
            post = replace(post, listed_as=listed)
        yield post


def _pages(client: HttpClient, url: str, depth: int, visited: set[str]) -> Iterator[_Entry]:
    visited.add(url)
    document = fetch_document(client, url)
    root = parse_xml(document.body, f"sitemap {url}")
    kind = local_name(root.tag)
    if kind == "urlset":
        entries = _entries(root, "url", document.url)
        if len(entries) > MAX_PAGES:
            log.warning("%s lists %d pages; reading the first %d", url, len(entries), MAX_PAGES)
        yield from entries[:MAX_PAGES]
        return
    if kind != "sitemapindex":
        raise SourceError(f"{url}: not a sitemap (root element <{kind}>)")
    if depth >= MAX_DEPTH:
        log.warning("%s: sitemap indexes nested deeper than %d are not followed", url, MAX_DEPTH)
        return
    children = [entry.loc for entry in _entries(root, "sitemap", document.url)]
    archives = [child for child in children if _lists_archives(child)]
    if archives:
        log.info("%s: not reading %d sitemaps of category, tag and author archives",
                 url, len(archives))
        children = [child for child in children if child not in archives]
    if len(children) > MAX_CHILD_SITEMAPS:
        log.warning("%s lists %d sitemaps; reading the first %d", url, len(children),
                    MAX_CHILD_SITEMAPS)
    for child in children[:MAX_CHILD_SITEMAPS]:
        if child in visited:
            continue
        try:
            yield from _pages(client, child, depth + 1, visited)
        except SourceError as exc:
            log.warning("skipping sitemap %s listed in %s: %s", child, url, exc)


def _lists_archives(url: str) -> bool:
    """Whether a child sitemap lists a blog's archive pages (category, tag, author), which
    are lists of post excerpts, not posts: WordPress's own and Yoast's (Rank Math's) names."""
    name = urlsplit(url).path.rsplit("/", 1)[-1]
    return _ARCHIVE_SITEMAP_RE.fullmatch(name) is not None


def _entries(root: Element, item_name: str, base: str) -> list[_Entry]:
    """The <loc>/<lastmod> pairs of a sitemap's <url> or <sitemap> children."""
    entries = []
    for item in root:
        if local_name(item.tag) != item_name:
            continue
        loc, lastmod = "", None
        for field in item:
            name = local_name(field.tag)
            if name == "loc":
                loc = (field.text or "").strip()
            elif name == "lastmod":
                lastmod = to_utc(field.text or "")
        if not loc:
            continue
        try:
            absolute = resolve(loc, base)
        except ValueError:
            log.warning("%s: skipping malformed <loc> %r", base, loc)
            continue
        if scheme_of(absolute) in FETCHABLE_SCHEMES:
            entries.append(_Entry(absolute, lastmod))
    return entries
