"""Robust Links for a post's HTML: mark each archived ``<a href>`` with its archived copy.

``decorate_html`` adds ``data-originalurl``, ``data-versionurl`` and ``data-versiondate`` (the
attributes of the Robust Links convention) to every link that has an archived copy. Like the
replay rewriter, it is a byte-preserving pass that reuses that module's tokenizer regexes: only
the three attributes change; every other character of the document is copied through.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from archiver.archive import Archive
from archiver.replay.lookup import latest_good_captures, replay_path
from archiver.replay.rewrite import (
    _ATTR,
    _C0_SPACE,
    _escape_attr,
    _unescape_attr,
    iter_start_tags,
)
from archiver.urls import (
    FETCHABLE_SCHEMES,
    InvalidURL,
    canonicalize,
    resolve,
    scheme_of,
    url_key,
)

__all__ = ["ROBUST_ATTRIBUTES", "Lookup", "archive_lookup", "decorate_html",
           "decorate_with_archive"]

ORIGINAL, VERSION, DATE = "data-originalurl", "data-versionurl", "data-versiondate"
ROBUST_ATTRIBUTES = (ORIGINAL, VERSION, DATE)
# Canonical URLs -> {canonical URL: (absolute URL of the archived copy, its capture time)}
Lookup = Callable[[list[str]], dict[str, tuple[str, datetime]]]
LOOKUP_BATCH = 500  # URL keys per SQL IN (...) list


@dataclass
class _Anchor:
    """One ``<a>`` start tag with an href: where its attributes end and what they hold."""

    attrs_end: int
    href: str
    robust: dict[str, list[re.Match[str]]] = field(default_factory=dict)
    absolute: str = ""
    canonical: str = ""


def _value(match: re.Match[str]) -> str:
    """Decoded value of an ``_ATTR`` match ('' for an attribute without a value)."""
    group = match.lastindex or 0
    return _unescape_attr(match.group(group)) if group >= 2 else ""


def _start_tags(html: str) -> Iterator[re.Match[str]]:
    """The ``<a>`` and ``<base>`` start tags of a document, skipping comments and raw text."""
    for tag, name, _raw_start, _raw_stop in iter_start_tags(html):
        if name in ("a", "base"):
            yield tag


def _insertion_point(html: str, tag: re.Match[str],
                     attrs: list[tuple[str, re.Match[str]]]) -> int:
    """Where new attributes go: after the last one, or before a last one left as ``name=``.

    A value-less ``name=`` would take whatever follows it as its value, so new attributes
    go in front of it instead.
    """
    last = attrs[-1][1]
    if last.lastindex == 1 and "=" in html[last.end(1):last.end()]:
        return last.start()
    return tag.end(3)


def _scan(html: str) -> tuple[list[_Anchor], str | None]:
    """Every ``<a href>`` of the document, and the first ``<base href>`` (decoded)."""
    anchors: list[_Anchor] = []
    base: str | None = None
    for tag in _start_tags(html):
        attrs = [(m.group(1).lower(), m) for m in _ATTR.finditer(html, *tag.span(3))]
        first: dict[str, re.Match[str]] = {}
        for name, match in attrs:
            first.setdefault(name, match)  # the first of duplicated attributes counts
        if "href" not in first:
            continue
        if tag.group(2).lower() == "base":
            if base is None:
                base = _value(first["href"])
            continue
        robust: dict[str, list[re.Match[str]]] = {}
        for name, match in attrs:
            if name in ROBUST_ATTRIBUTES:
                robust.setdefault(name, []).append(match)
        anchors.append(_Anchor(attrs_end=_insertion_point(html, tag, attrs),
                               href=_value(first["href"]), robust=robust))
    return anchors, base


def _document_base(page_url: str, base_href: str | None) -> str:
    """The URL relative hrefs resolve against: the first <base href>, else the page's URL."""
    if base_href is None:
        return page_url
    try:
        base = resolve(base_href.strip(_C0_SPACE), page_url)
    except ValueError:
        return page_url
    return base if scheme_of(base) in FETCHABLE_SCHEMES else page_url


def _resolve(href: str, base: str) -> tuple[str, str] | None:
    """(absolute URL, canonical URL) of an href, or None when it is no fetchable link."""
    target = href.strip(_C0_SPACE)
    if not target or target.startswith("#"):
        return None
    try:
        absolute = resolve(target, base) if base else target
        return absolute, canonicalize(absolute)
    except (InvalidURL, ValueError):
        return None


def _attribute(name: str, value: str) -> str:
    return f'{name}="{_escape_attr(value, chr(34))}"'


def _edits(anchor: _Anchor, version_url: str,
           captured_at: datetime) -> list[tuple[int, int, str]]:
    """Replacements that give one anchor its three attributes (replacing any it had)."""
    wanted = {ORIGINAL: anchor.absolute, VERSION: version_url,
              DATE: captured_at.strftime("%Y-%m-%d")}
    edits: list[tuple[int, int, str]] = []
    missing: list[str] = []
    for name, value in wanted.items():
        found = anchor.robust.get(name)
        if not found:
            missing.append(_attribute(name, value))
            continue
        head, *duplicates = found
        spelled = head.group(1)  # keep the author's spelling (case) of the name
        edits.append((head.start(1), head.end(), _attribute(spelled, value)))
        edits.extend((dup.start(), dup.end(), "") for dup in duplicates)
    if missing:
        edits.append((anchor.attrs_end, anchor.attrs_end, " " + " ".join(missing)))
    return edits


def decorate_html(html: str, page_url: str, lookup: Lookup) -> str:
    """Add Robust Links attributes to every archived ``<a href>``; leave all other bytes alone.

    ``page_url`` resolves relative hrefs ('' leaves them alone); ``lookup`` receives the
    canonical URLs of the document's links (one call) and returns, for those archived, the
    absolute URL of the archived copy and its capture time. Existing ``data-originalurl``,
    ``data-versionurl`` and ``data-versiondate`` attributes of archived links are replaced, so
    decorating twice gives the same document.
    """
    anchors, base_href = _scan(html)
    base = _document_base(page_url, base_href)
    for anchor in anchors:
        resolved = _resolve(anchor.href, base)
        if resolved is not None:
            anchor.absolute, anchor.canonical = resolved
    wanted = sorted({anchor.canonical for anchor in anchors if anchor.canonical})
    found = lookup(wanted) if wanted else {}
    edits: list[tuple[int, int, str]] = []
    for anchor in anchors:
        version = found.get(anchor.canonical) if anchor.canonical else None
        if version is not None:
            edits.extend(_edits(anchor, *version))
    if not edits:
        return html
    edits.sort(key=lambda edit: (edit[0], edit[1]))
    out: list[str] = []
    last = 0
    for start, end, text in edits:
        out.append(html[last:start])
        out.append(text)
        last = end
    out.append(html[last:])
    return "".join(out)


def archive_lookup(archive: Archive, base_url: str) -> Lookup:
    """A lookup answering from the index: the latest good capture of each URL, replay URL."""
    prefix = base_url.rstrip("/")

    def lookup(urls: list[str]) -> dict[str, tuple[str, datetime]]:
        keys = {url: url_key(url) for url in urls}
        unique = sorted(set(keys.values()))
        latest: dict[str, datetime] = {}
        with archive.db.session() as session:
            for start in range(0, len(unique), LOOKUP_BATCH):
                latest.update(latest_good_captures(session, unique[start:start + LOOKUP_BATCH]))
        return {url: (prefix + replay_path(latest[key], url), latest[key])
                for url, key in keys.items() if key in latest}

    return lookup


def decorate_with_archive(archive: Archive, html: str, page_url: str, base_url: str) -> str:
    """Decorate ``html`` with the archive's latest good capture of each link.

    ``data-versionurl`` is ``base_url`` (the archive's public address, e.g.
    ``https://archive.example``) plus the capture's replay path.
    """
    return decorate_html(html, page_url, archive_lookup(archive, base_url))
