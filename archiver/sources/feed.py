"""RSS, Atom and RDF feeds, parsed by feedparser from bytes we fetched ourselves."""

from __future__ import annotations

import html as html_lib
import io
import logging
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import feedparser
from selectolax.lexbor import LexborHTMLParser

from archiver.errors import SourceError
from archiver.net.client import HttpClient
from archiver.sources.common import PostData, canonical_or_raw, fetch_document
from archiver.urls import FETCHABLE_SCHEMES, resolve, scheme_of, site_or_empty

log = logging.getLogger(__name__)

FEED_TYPES = frozenset({"application/rss+xml", "application/atom+xml", "application/rdf+xml",
                        "application/feed+xml", "application/x-rss+xml"})
FEED_ROOTS = frozenset({"rss", "feed", "rdf"})
_PROLOG_END_RE = re.compile(rb"<[A-Za-z_]")
MAX_FEED_PAGES = 20  # older pages read per feed, the first included
# RFC 5005: a paged feed names its next page, an archived feed its previous archive.
_OLDER_PAGE_RELS = ("next", "prev-archive")
# An RSS description this short, in one paragraph, is a summary (Hugo cuts at 70 words,
# WordPress's excerpts at 55); a cut-off one ends in an ellipsis or a link to read on.
SUMMARY_WORDS = 70
_BLOCKS = "p, h1, h2, h3, h4, h5, h6, li, blockquote, pre, table"
_ELLIPSIS_END_RE = re.compile(r"(?:\u2026|\.\.\.)\W*$")
_READ_ON_RE = re.compile(r"\b(?:continue reading|read more|read the rest|keep reading)\b",
                         re.IGNORECASE)
_READ_ON_TAIL = 120  # characters: "Continue reading <the post's title>" ends the text


def read_feed(client: HttpClient, url: str) -> Iterator[PostData]:
    """Fetch a feed and yield its entries as posts, following its older pages (RFC 5005)
    up to MAX_FEED_PAGES; a later page that cannot be read ends the walk, not the source."""
    visited = {url}
    page: str | None = url
    for number in range(MAX_FEED_PAGES):
        assert page is not None
        try:
            document = fetch_document(client, page)
            posts, following = _parse(document.body, document.url,
                                      document.content_type_header)
        except SourceError as exc:
            if number == 0:
                raise
            log.warning("%s: stopped at feed page %s: %s", url, page, exc)
            return
        yield from posts
        visited.add(document.url)
        if following is None or following in visited:
            return
        visited.add(following)
        page = following
    log.warning("%s: feed pages beyond %d are not read", url, MAX_FEED_PAGES)


def parse_feed(data: bytes, url: str, content_type: str = "") -> list[PostData]:
    """Entries of a feed document; a document that is no feed at all is a SourceError."""
    return _parse(data, url, content_type)[0]


def _parse(data: bytes, url: str, content_type: str) -> tuple[list[PostData], str | None]:
    """Entries of a feed document and the URL of its next page, if it names one."""
    prolog_end = _PROLOG_END_RE.search(data)
    if b"<!ENTITY" in data[:prolog_end.start() if prolog_end else len(data)]:
        raise SourceError(f"{url}: refused a feed that declares XML entities")
    headers = {"content-location": url}
    if content_type:
        headers["content-type"] = content_type
    # A BytesIO, never a str: feedparser treats a str as a URL or file name and opens it.
    parsed: Any = feedparser.parse(io.BytesIO(data), response_headers=headers,
                                   resolve_relative_uris=False, sanitize_html=False)
    posts = []
    atom = str(parsed.get("version") or "").startswith("atom")
    for entry in parsed.get("entries") or []:
        post = _post(entry, url, str((parsed.get("feed") or {}).get("link") or ""), atom)
        if post is not None:
            posts.append(post)
    # A broken document can still yield a half-entry; without a usable post it is no feed.
    if not posts and (parsed.get("bozo") or not parsed.get("version")):
        problem = parsed.get("bozo_exception") or "not an RSS, Atom or RDF feed"
        raise SourceError(f"{url}: cannot read the feed: {problem}")
    return posts, _next_page(parsed.get("feed") or {}, url)


def _next_page(feed: Any, url: str) -> str | None:
    """The feed's link to its older entries (Atom, or atom:link in RSS), an http(s) URL."""
    for link in feed.get("links") or []:
        if str(link.get("rel") or "") not in _OLDER_PAGE_RELS:
            continue
        try:
            following = resolve(str(link.get("href") or "").strip(), url)
        except ValueError:
            return None
        return following if scheme_of(following) in FETCHABLE_SCHEMES else None
    return None


def _post(entry: Any, feed_url: str, blog_url: str, atom: bool) -> PostData | None:
    # FeedBurner's origLink is the post's own URL; its <link> is a redirector's.
    link = str(entry.get("feedburner_origlink") or entry.get("link") or "").strip()
    if not link:
        identifier = str(entry.get("id") or "").strip()
        link = identifier if scheme_of(identifier) in FETCHABLE_SCHEMES else ""
    if not link:
        log.warning("%s: skipping an entry without a link (%s)", feed_url,
                    entry.get("title") or "untitled")
        return None
    try:
        link = resolve(link, feed_url)
    except ValueError:
        log.warning("%s: skipping an entry with a malformed link %r", feed_url, link)
        return None
    title = _plain(str(entry.get("title") or ""), (entry.get("title_detail") or {}).get("type"))
    html, base, from_summary = _content(entry)
    # An RSS <description> is the whole post as often as a summary (RSS has no content
    # element): only one that looks cut is; an Atom <summary> without <content> always is.
    summary_only = from_summary and (atom or _looks_cut(html))
    html = _with_base(html, base, feed_url)
    permalink = _permalink_on_blog(entry, link, blog_url)
    if permalink is not None:
        # A link-blog entry: the post is the blog's page, the linked article its reference.
        cited = html_lib.escape(link, quote=True)
        html = f'<p><a href="{cited}">{html_lib.escape(title or link)}</a></p>{html}'
        link = permalink
    # Its page is read only on the blog's own site: a links feed's entry names another
    # site's article, whose links are that site's, not the blogger's.
    summary_only = summary_only and site_or_empty(link) in {
        site for site in (site_or_empty(blog_url), site_or_empty(feed_url)) if site}
    return PostData(url=canonical_or_raw(link), title=title,
                    published_at=_published(entry), html=html, summary_only=summary_only)


def _permalink_on_blog(entry: Any, link: str, blog_url: str) -> str | None:
    """The entry's own address on the blog when its <link> points to another site (a link-blog
    entry): a rel="related"/"alternate" link or the GUID, on the blog's site."""
    blog = site_or_empty(blog_url)
    if not blog or site_or_empty(link) == blog:
        return None
    candidates = [str(item.get("href") or "").strip() for item in entry.get("links") or []
                  if str(item.get("rel") or "alternate") in ("related", "alternate")]
    candidates.append(str(entry.get("id") or "").strip())
    for candidate in candidates:
        if scheme_of(candidate) in FETCHABLE_SCHEMES and site_or_empty(candidate) == blog:
            return candidate
    return None


def _plain(text: str, kind: object) -> str | None:
    """Title as plain text (Atom allows HTML titles), whitespace collapsed."""
    if "html" in str(kind or "") and ("<" in text or "&" in text):
        text = LexborHTMLParser(text).text(deep=True)
    return " ".join(text.split()) or None


def _content(entry: Any) -> tuple[str, str, bool]:
    """The fullest body an entry has (HTML content, else any content, else the summary),
    the base URL feedparser worked out for it from xml:base, and whether it is the summary."""
    contents = entry.get("content") or []
    chosen = next((item for item in contents if "html" in str(item.get("type") or "")), None)
    if chosen is None and contents:
        chosen = contents[0]
    if chosen is None:
        detail = entry.get("summary_detail") or {}
        value, kind = entry.get("summary") or "", str(detail.get("type") or "text/html")
    else:
        detail = chosen
        value, kind = chosen.get("value") or "", str(chosen.get("type") or "text/html")
    text = str(value)
    return ((text if "html" in kind else html_lib.escape(text)), str(detail.get("base") or ""),
            chosen is None)


def _looks_cut(html: str) -> bool:
    """Whether an RSS description is a summary: a teaser (one paragraph of at most
    SUMMARY_WORDS words, as Hugo's and WordPress's summaries are) or text cut off with an
    ellipsis, "[…]" or a "Continue reading" / "Read more" link."""
    tree = LexborHTMLParser(html)
    text = " ".join(tree.text(deep=True).split())
    if _ELLIPSIS_END_RE.search(text) or _READ_ON_RE.search(text[-_READ_ON_TAIL:]):
        return True
    return len(tree.css(_BLOCKS)) <= 1 and len(text.split()) <= SUMMARY_WORDS


def _with_base(html: str, base: str, feed_url: str) -> str:
    """Keep an xml:base with the content as a <base href>, so its relative links resolve
    against it; without one (the base is the feed's URL) they resolve against the post."""
    if not html or not base or base == feed_url or scheme_of(base) not in FETCHABLE_SCHEMES:
        return html
    return f'<base href="{html_lib.escape(base, quote=True)}">{html}'


def _published(entry: Any) -> datetime | None:
    # feedparser gives *_parsed as UTC struct_time.
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = entry.get(key)
        if parsed:
            try:
                return datetime(*parsed[:6])
            except (TypeError, ValueError):
                continue
    return None
