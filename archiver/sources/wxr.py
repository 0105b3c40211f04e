"""WordPress export files (WXR 1.0-1.2), streamed so that large exports stay cheap."""

from __future__ import annotations

import html as html_lib
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from archiver.errors import SourceError
from archiver.sources.common import (
    PostData,
    canonical_or_raw,
    local_name,
    namespace_of,
    to_utc,
)
from archiver.urls import FETCHABLE_SCHEMES, scheme_of

log = logging.getLogger(__name__)

# The export namespace's version varies (1.0, 1.1, 1.2); the excerpt namespace lives below it.
_WP_NAMESPACE_RE = re.compile(r"https?://wordpress\.org/export/\d+(?:\.\d+)*/?")
_CONTENT_NAMESPACE = "http://purl.org/rss/1.0/modules/content/"
POST_TYPES = frozenset({"post", "page"})
# WordPress stores a post's source, where an embed is a bare URL: alone on its line (also
# inside a block's wrapper <div>), alone in a paragraph, or in an [embed] shortcode.  These
# are WordPress's own auto-embed patterns (WP_Embed::autoembed); <pre> is left as written.
_PRE_RE = re.compile(r"(<pre\b.*?</pre>)", re.IGNORECASE | re.DOTALL)
_EMBED_PATTERNS = (
    re.compile(r"\[embed\b[^\]]*\]()\s*(https?://[^\s<>\"\[]+)\s*()\[/embed\]", re.IGNORECASE),
    re.compile(r'(<p(?: [^>]*)?>\s*)(https?://[^\s<>"]+)(\s*</p>)', re.IGNORECASE),
    # Blanks only, not \s: \s* spanning lines makes a long run of empty lines quadratic.
    re.compile(r'^([ \t]*)(https?://[^\s<>"]+)([ \t]*\r?)$', re.IGNORECASE | re.MULTILINE),
)


def looks_like_wxr(path: Path) -> bool:
    """True when the file is an RSS document that declares the WordPress export namespace."""
    namespaces: set[str] = set()
    try:
        with path.open("rb") as stream:
            for event, value in iterparse(stream, events=("start-ns", "start"),
                                          forbid_dtd=True):
                if event == "start-ns":
                    namespaces.add(value[1])
                    continue
                return local_name(value.tag) == "rss" and any(
                    _WP_NAMESPACE_RE.fullmatch(uri) for uri in namespaces)
    except DefusedXmlException as exc:
        raise SourceError(f"{path}: refused XML with a DTD or entity declarations "
                          f"({type(exc).__name__})") from exc
    except (ParseError, OSError, UnicodeError):
        return False
    return False


def read_wxr(path: Path) -> Iterator[PostData]:
    """Yield the published posts and pages of a WordPress export file."""
    try:
        with path.open("rb") as stream:
            yield from _items(stream, path)
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _items(stream: IO[bytes], path: Path) -> Iterator[PostData]:
    namespaces: set[str] = set()
    root_seen = False
    try:
        for event, value in iterparse(stream, events=("start-ns", "start", "end"),
                                      forbid_dtd=True):
            if event == "start-ns":
                namespaces.add(value[1])
            elif event == "start":
                if not root_seen and not (local_name(value.tag) == "rss" and any(
                        _WP_NAMESPACE_RE.fullmatch(uri) for uri in namespaces)):
                    raise SourceError(f"{path}: not a WordPress export (WXR) file")
                root_seen = True
            elif local_name(value.tag) == "item":
                post = _post(value, path)
                value.clear()  # keep memory flat on exports with thousands of posts
                if post is not None:
                    yield post
    except DefusedXmlException as exc:
        raise SourceError(f"{path}: refused XML with a DTD or entity declarations "
                          f"({type(exc).__name__})") from exc
    except ParseError as exc:
        raise SourceError(f"{path}: malformed WordPress export ({exc})") from exc


def _post(item: Element, path: Path) -> PostData | None:
    plain: dict[str, str] = {}
    wordpress: dict[str, str] = {}
    content = ""
    for child in item:
        namespace, name, text = namespace_of(child.tag), local_name(child.tag), child.text or ""
        if not namespace:
            plain[name] = text.strip()
        elif _WP_NAMESPACE_RE.fullmatch(namespace):
            wordpress[name] = text.strip()
        elif namespace == _CONTENT_NAMESPACE and name == "encoded":
            content = text
    if wordpress.get("post_type", "post") not in POST_TYPES:
        return None
    if wordpress.get("status") != "publish" or wordpress.get("post_password"):
        return None  # drafts, private and password-protected posts are not public
    url = plain.get("link", "")
    if scheme_of(url) not in FETCHABLE_SCHEMES:
        guid = plain.get("guid", "")
        url = guid if scheme_of(guid) in FETCHABLE_SCHEMES else ""
    title = " ".join(plain.get("title", "").split()) or None
    if not url:
        log.warning("%s: skipping %r, which has no link", path, title or "an untitled post")
        return None
    published = (to_utc(wordpress.get("post_date_gmt", ""))
                 or to_utc(plain.get("pubDate", ""))
                 or to_utc(wordpress.get("post_date", "")))  # site-local time: a last resort
    return PostData(url=canonical_or_raw(url), title=title, published_at=published,
                    html=link_embeds(content))


def link_embeds(content: str) -> str:
    """WordPress post source with its bare-URL embeds made into links, <pre> untouched."""
    pieces = _PRE_RE.split(content)
    for index in range(0, len(pieces), 2):  # odd indexes are the <pre> blocks
        for pattern in _EMBED_PATTERNS:
            pieces[index] = pattern.sub(_embed_link, pieces[index])
    return "".join(pieces)


def _embed_link(match: re.Match[str]) -> str:
    url = html_lib.escape(html_lib.unescape(match.group(2)), quote=True)
    return f'{match.group(1)}<a href="{url}">{url}</a>{match.group(3)}'
