"""A single post at a URL, and the HTML helpers other readers share: title, date, content."""

from __future__ import annotations

import html as html_lib
import re
from datetime import datetime
from urllib.parse import urlsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode

from archiver.errors import SourceError
from archiver.net.client import HttpClient
from archiver.net.content import decode_text
from archiver.sources.common import (
    Document,
    PostData,
    canonical_or_raw,
    fetch_document,
    to_utc,
)
from archiver.urls import FETCHABLE_SCHEMES, host_of, resolve, scheme_of

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
FEED_LINK_TYPES = frozenset({"application/rss+xml", "application/atom+xml"})
# Where a post's own content lives, most specific first; ``body`` is the last resort.
CONTENT_SELECTORS = ("article", "main", "[itemprop=articleBody]", ".entry-content",
                     ".post-content", ".post", "#content")
# Page furniture dropped when only ``body`` is left, so blogrolls and menus are not taken.
_FURNITURE = "nav, aside, header, footer, script, style, template"
_COMMENTS_RE = re.compile(r"\bcomments\b", re.IGNORECASE)
_LATIN1_NAMES = frozenset({"iso-8859-1", "iso8859-1", "latin-1", "latin1", "l1",
                           "windows-1252", "cp1252", "us-ascii", "ascii"})


def feed_of_home_page(document: Document) -> str | None:
    """The posts feed a blog's home page names (a <link rel="alternate"> of an RSS or Atom
    type; comments feeds passed over), when the page is the blog's home: the site's root,
    whatever host its feed is on (FeedBurner's), or the folder the feed lives in
    (https://blog.example/blog/ and /blog/feed/; a post page at /a-post/ names /feed/)."""
    tree = LexborHTMLParser(_decode(document.body, document.charset))
    if _is_single_post(tree):
        return None
    for node in tree.css("link[rel][href][type]"):
        attributes = node.attributes
        rels = (attributes.get("rel") or "").lower().split()
        if "alternate" not in rels or (attributes.get("type") or "").strip().lower() not in (
                FEED_LINK_TYPES):
            continue
        try:
            feed = resolve((attributes.get("href") or "").strip(), document.url)
        except ValueError:
            continue
        if _is_comments_feed(feed, attributes.get("title") or ""):
            continue
        return feed if _is_home_of(document.url, feed) else None
    return None


def _is_single_post(tree: LexborHTMLParser) -> bool:
    """Whether WordPress marks the page as one post (``<body class="single ...">``): its
    own comments feed, at /the-post/feed/, looks like a blog's at /blog/feed/."""
    body = tree.body
    return body is not None and "single" in (body.attributes.get("class") or "").split()


def _is_comments_feed(feed: str, title: str) -> bool:
    """Whether a feed carries comments, not posts: WordPress titles each "... Comments Feed"
    (the site's at /comments/feed/, a post's at /the-post/feed/), Blogger's live under
    /feeds/comments/."""
    segments = urlsplit(feed).path.lower().split("/")
    return _COMMENTS_RE.search(title) is not None or "comments" in segments


def _is_home_of(page: str, feed: str) -> bool:
    """Whether ``page`` is the blog's home for ``feed``: the root of its site (a feed service
    may serve the feed from another host), or the folder the feed lives in on the same host."""
    if scheme_of(feed) not in FETCHABLE_SCHEMES:
        return False
    folder = urlsplit(page).path or "/"
    if folder == "/":
        return True
    return host_of(page) == host_of(feed) and folder.endswith("/") and (
        urlsplit(feed).path.startswith(folder))


def read_page(client: HttpClient, url: str) -> PostData:
    """Fetch one post page and read it."""
    document = fetch_document(client, url)
    if document.content_type and document.content_type not in HTML_TYPES:
        raise SourceError(f"{url} is not an HTML page ({document.content_type})")
    return post_from_html(_decode(document.body, document.charset),
                          canonical_or_raw(document.url))


def _decode(body: bytes, charset: str | None) -> str:
    """The page's text; a body declared Latin-1 that is valid UTF-8 beyond ASCII is UTF-8
    (a server default in front of a UTF-8 blog: real Latin-1 text is almost never valid
    UTF-8), so its accented and international links keep their meaning."""
    if (charset or "").strip().lower() in _LATIN1_NAMES and not body.isascii():
        try:
            return body.decode("utf-8-sig")
        except UnicodeDecodeError:
            pass
    return decode_text(body, charset)


def post_from_html(text: str, url: str, title: str | None = None,
                   published_at: datetime | None = None) -> PostData:
    """Read a post from a whole HTML document; given title and date win over the page's."""
    tree = LexborHTMLParser(text)
    return PostData(
        url=url,
        title=title or page_title(tree),
        published_at=published_at or page_published(tree),
        html=_with_base(tree, url, main_content_html(tree)),
    )


def page_title(tree: LexborHTMLParser) -> str | None:
    """Title from og:title, else <title>, else the first <h1>."""
    meta = tree.css_first('meta[property="og:title"][content]')
    candidates = [
        meta.attributes.get("content") if meta is not None else None,
        _text(tree.css_first("title")),
        _text(tree.css_first("h1")),
    ]
    for candidate in candidates:
        cleaned = " ".join((candidate or "").split())
        if cleaned:
            return cleaned
    return None


def page_published(tree: LexborHTMLParser) -> datetime | None:
    """Publication time from article:published_time, itemprop=datePublished or <time>."""
    for selector, attribute in (
        ('meta[property="article:published_time"]', "content"),
        ('meta[name="article:published_time"]', "content"),
        ('[itemprop="datePublished"][content]', "content"),
        ('[itemprop="datePublished"][datetime]', "datetime"),
        ("article time[datetime]", "datetime"),
        ("time[datetime]", "datetime"),
    ):
        node = tree.css_first(selector)
        if node is not None:
            moment = to_utc(node.attributes.get(attribute) or "")
            if moment is not None:
                return moment
    return None


def main_content(tree: LexborHTMLParser) -> LexborNode | None:
    """The element holding the post itself, when the page marks it."""
    for selector in CONTENT_SELECTORS:
        node = tree.css_first(selector)
        if node is not None:
            return node
    return None


def main_content_html(tree: LexborHTMLParser) -> str:
    """HTML of the post's content: its marked element, else the body without furniture."""
    node = main_content(tree)
    if node is not None:
        return node.html or ""
    body = tree.body
    if body is None:
        return tree.html or ""
    for furniture in _outermost(body.css(_FURNITURE)):
        furniture.decompose()
    return body.html or ""


def _outermost(nodes: list[LexborNode]) -> list[LexborNode]:
    """Nodes not inside another of ``nodes``: removing one must not free another."""
    ids = {node.mem_id for node in nodes}
    kept = []
    for node in nodes:
        parent = node.parent
        while parent is not None and parent.mem_id not in ids:
            parent = parent.parent
        if parent is None:
            kept.append(node)
    return kept


def _with_base(tree: LexborHTMLParser, url: str, content: str) -> str:
    """Keep the page's <base href> with the content, so relative links still resolve right."""
    base = tree.css_first("base[href]")
    href = (base.attributes.get("href") or "").strip() if base is not None else ""
    if not href:
        return content
    try:
        absolute = resolve(href, url)
    except ValueError:
        return content
    if scheme_of(absolute) not in FETCHABLE_SCHEMES:
        return content
    return f'<base href="{html_lib.escape(absolute, quote=True)}">{content}'


def _text(node: LexborNode | None) -> str | None:
    return node.text(deep=True) if node is not None else None
