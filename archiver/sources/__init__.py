"""Reading posts from a source: feeds, sitemaps, single pages, WordPress exports, folders.

:func:`detect_kind` tells what a location is; :func:`read_posts` yields its posts.  Every
failure to recognise or read a source is a :class:`~archiver.errors.SourceError` with a
message meant for the user, never a parser's traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from archiver.errors import SourceError
from archiver.models import SourceKind
from archiver.net.client import HttpClient
from archiver.sources.common import Document, PostData, fetch_document, local_name, sniff_root
from archiver.sources.feed import FEED_ROOTS, FEED_TYPES, read_feed
from archiver.sources.folder import read_folder
from archiver.sources.page import HTML_TYPES, feed_of_home_page, read_page
from archiver.sources.sitemap import SITEMAP_ROOTS, read_sitemap
from archiver.sources.wxr import looks_like_wxr, read_wxr
from archiver.urls import FETCHABLE_SCHEMES, scheme_of

log = logging.getLogger(__name__)

__all__ = ["PostData", "detect_kind", "detect_source", "read_posts"]


def detect_kind(location: str, client: HttpClient) -> SourceKind:
    """What kind of source ``location`` is: a URL is fetched once and sniffed."""
    if scheme_of(location) in FETCHABLE_SCHEMES:
        return kind_of_document(fetch_document(client, location))
    path = Path(location).expanduser()
    if path.is_dir():
        return SourceKind.FOLDER
    if path.is_file():
        if looks_like_wxr(path):
            return SourceKind.WXR
        raise SourceError(f"unknown source type: {location} is a file but not a WordPress "
                          "export (WXR); give a folder, a WXR file or an http(s) URL")
    raise SourceError(f"{location}: no such file or folder, and not an http(s) URL")


def detect_source(location: str, client: HttpClient) -> tuple[SourceKind, str]:
    """What kind of source ``location`` is, and the location to register for it: a blog's
    home page that names its feed is that feed (its posts, not one page of excerpts)."""
    if scheme_of(location) not in FETCHABLE_SCHEMES:
        return detect_kind(location, client), location
    document = fetch_document(client, location)
    kind = kind_of_document(document)
    feed = feed_of_home_page(document) if kind is SourceKind.PAGE else None
    if feed is None:
        return kind, location
    try:
        if kind_of_document(fetch_document(client, feed)) is SourceKind.FEED:
            return SourceKind.FEED, feed
    except SourceError as exc:
        log.warning("%s names the feed %s, which cannot be read (%s): adding the page",
                    location, feed, exc)
    return kind, location


def kind_of_document(document: Document) -> SourceKind:
    """Sniff a fetched document: sitemap, feed or HTML page."""
    root = sniff_root(document.body)
    name = local_name(root).lower() if root else ""
    if name in SITEMAP_ROOTS:
        return SourceKind.SITEMAP
    if name in FEED_ROOTS:
        return SourceKind.FEED
    if name == "html" or document.content_type in HTML_TYPES:
        return SourceKind.PAGE
    if document.content_type in FEED_TYPES:
        return SourceKind.FEED
    described = document.content_type or "no content type"
    if root:
        described += f", root element <{root}>"
    raise SourceError(f"unknown source type at {document.url} ({described}): "
                      "expected a feed, a sitemap or an HTML page")


def read_posts(kind: SourceKind, location: str, client: HttpClient) -> Iterator[PostData]:
    """Yield the posts of a source; any failure is a SourceError raised while iterating."""
    if kind in (SourceKind.FEED, SourceKind.SITEMAP, SourceKind.PAGE):
        if scheme_of(location) not in FETCHABLE_SCHEMES:
            raise SourceError(f"a {kind} source needs an http(s) URL, not {location!r}")
        if kind is SourceKind.FEED:
            yield from read_feed(client, location)
        elif kind is SourceKind.SITEMAP:
            yield from read_sitemap(client, location)
        else:
            yield read_page(client, location)
        return
    path = Path(location).expanduser()
    if kind is SourceKind.WXR:
        if not path.is_file():
            raise SourceError(f"{location}: no such WordPress export file")
        yield from read_wxr(path)
    elif kind is SourceKind.FOLDER:
        if not path.is_dir():
            raise SourceError(f"{location}: no such folder")
        yield from read_folder(path)
    else:
        raise SourceError(f"unknown source kind {kind!r}")
