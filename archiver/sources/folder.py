"""A local folder of posts: HTML and Markdown files, with optional YAML front matter."""

from __future__ import annotations

import logging
import os
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import frontmatter
from frontmatter.default_handlers import BaseHandler
from markdown_it import MarkdownIt
from selectolax.lexbor import LexborHTMLParser

from archiver.net.content import decode_text
from archiver.sources.common import PostData, canonical_or_raw, to_utc
from archiver.sources.page import post_from_html
from archiver.urls import FETCHABLE_SCHEMES, scheme_of

log = logging.getLogger(__name__)

HTML_SUFFIXES = frozenset({".html", ".htm"})
MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})
_DATED_NAME_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})-")  # Jekyll's 2024-01-31-title.md
_MARKDOWN = MarkdownIt("commonmark")
_DRAFTS_FOLDER = "_drafts"


MAX_POST_BYTES = 20 * 1024 * 1024  # a "post" larger than this is not one; it is skipped


class _TomlFrontMatter(BaseHandler):
    """Hugo's TOML front matter between ``+++`` lines (the library's own needs a third-party
    TOML package; the standard library reads TOML)."""

    FM_BOUNDARY = re.compile(r"^\+{3,}\s*$", re.MULTILINE)
    START_DELIMITER = END_DELIMITER = "+++"

    def load(self, fm: str, **kwargs: object) -> Any:
        """The front matter's fields."""
        return tomllib.loads(fm)


_TOML = _TomlFrontMatter()


@dataclass(frozen=True)
class Draft(PostData):
    """A post file marked unpublished: no post of the blog, but named, so that a post
    stored before it turned back into a draft is taken off the archive's pages."""


def read_folder(root: Path) -> Iterator[PostData]:
    """Yield a post per HTML or Markdown file below ``root``, in sorted path order; a file
    marked as a draft is yielded as a :class:`Draft` (its address alone)."""
    for path in post_files(root):
        post = read_file(path)
        if post is not None:
            yield post


def post_files(root: Path) -> list[Path]:
    """HTML and Markdown files below ``root``, hidden and ``_drafts`` folders and hidden files
    left out, sorted."""
    found: list[Path] = []

    def warn(error: OSError) -> None:
        log.warning("skipping unreadable folder %s: %s", error.filename, error.strerror)

    for folder, subfolders, files in os.walk(root, onerror=warn):
        # Jekyll keeps unpublished posts in _drafts/: never part of the built site.
        subfolders[:] = [name for name in subfolders
                         if not name.startswith(".") and name != _DRAFTS_FOLDER]
        for name in files:
            suffix = os.path.splitext(name)[1].lower()
            if not name.startswith(".") and suffix in HTML_SUFFIXES | MARKDOWN_SUFFIXES:
                found.append(Path(folder, name))
    return sorted(found, key=lambda path: path.relative_to(root).parts)


def read_file(path: Path) -> PostData | None:
    """One post file as a post (a :class:`Draft` when unpublished), or None (with a warning)
    when it cannot be read."""
    try:
        size = path.stat().st_size
        if size > MAX_POST_BYTES:
            log.warning("skipping %s: %d bytes is more than a post (%d)", path, size,
                        MAX_POST_BYTES)
            return None
        text = _decode(path.read_bytes(), path)
    except OSError as exc:
        log.warning("skipping unreadable file %s: %s", path, exc.strerror or exc)
        return None
    try:
        metadata, body = frontmatter.parse(text, handler=_TOML if _TOML.detect(text) else None)
    except Exception as exc:  # YAML and handler errors come in many types
        log.warning("skipping %s: bad front matter: %s", path, exc)
        return None
    if _is_draft(metadata):
        log.info("skipping %s: a draft, not published", path)
        return Draft(url=_url(metadata.get("url"), path), title=None, published_at=None,
                     html="")
    url = _url(metadata.get("url"), path)
    title = _title(metadata.get("title"))
    published = to_utc(metadata.get("date")) or _date_from_name(path)
    if path.suffix.lower() in MARKDOWN_SUFFIXES:
        html = _MARKDOWN.render(body)
        if title is None:
            heading = LexborHTMLParser(html).css_first("h1")
            title = _title(heading.text(deep=True)) if heading is not None else None
        return PostData(url=url, title=title, published_at=published, html=html)
    return post_from_html(body, url, title=title, published_at=published)


def _decode(data: bytes, path: Path) -> str:
    """A post file's text: an HTML file in the charset its <meta charset> declares (an old
    static blog saved as ISO-8859-1), as a browser reads it; Markdown as UTF-8 (a <meta>
    in a Markdown post is an example, not its encoding).  A BOM wins in both."""
    if path.suffix.lower() in HTML_SUFFIXES:
        return decode_text(data)
    return data.decode("utf-8-sig", errors="replace")


def _is_draft(metadata: dict[str, Any]) -> bool:
    """Whether front matter marks a post unpublished: Hugo's ``draft: true``, Jekyll's
    ``published: false`` (booleans, or the words as YAML 1.2 and TOML users quote them)."""
    return (_flag(metadata.get("draft")) is True
            or _flag(metadata.get("published")) is False)


def _flag(value: Any) -> bool | None:
    """A front-matter boolean, or None when the value is no boolean (``published`` can also
    be a date in some themes: that is not ``false``)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "false", "no"):
        return value.strip().lower() in ("true", "yes")
    return None


def _url(value: Any, path: Path) -> str:
    """The front matter's absolute URL, else the file's own file:// URI."""
    if isinstance(value, str) and scheme_of(value) in FETCHABLE_SCHEMES:
        return canonical_or_raw(value)
    return path.resolve().as_uri()


def _title(value: Any) -> str | None:
    if value is None:
        return None
    return " ".join(str(value).split()) or None


def _date_from_name(path: Path) -> datetime | None:
    match = _DATED_NAME_RE.match(path.name)
    return to_utc(match.group(1)) if match else None
