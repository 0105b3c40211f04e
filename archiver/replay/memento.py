"""Memento (RFC 7089): dates, Link headers, and TimeMaps in link-format and JSON.

URI-R is the original URL, URI-M a memento (``/web/<timestamp>/<url>``), URI-G the TimeGate
(``/web/<url>``), URI-T the TimeMap (``/timemap/link/<url>``).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import quote

from archiver.replay.lookup import replay_path
from archiver.urls import ascii_host

TIMEGATE_PREFIX = "/web/"
TIMEMAP_LINK_PREFIX = "/timemap/link/"
TIMEMAP_JSON_PREFIX = "/timemap/json/"
# What a URI keeps as it is (RFC 3986: reserved, unreserved, percent-escapes); '#' is not
# kept, as a request never carries a fragment.
_URI_SAFE = ":/?[]@!$&'()*+,;=%"


class Dated(Protocol):
    """Anything with a capture time (an index row)."""

    @property
    def captured_at(self) -> datetime:
        """Naive UTC time of the capture."""
        ...


def http_date(moment: datetime) -> str:
    """RFC 1123 date (``Tue, 20 Jun 2000 18:02:59 GMT``) of a naive UTC datetime."""
    return format_datetime(moment.replace(tzinfo=UTC), usegmt=True)


def parse_accept_datetime(text: str) -> datetime:
    """Naive UTC datetime from an ``Accept-Datetime`` header; ValueError when malformed."""
    try:
        parsed = parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"not an RFC 1123 date: {text!r}") from exc
    if parsed.tzinfo is None:
        raise ValueError("Accept-Datetime must be in GMT")
    try:
        return parsed.astimezone(UTC).replace(tzinfo=None)
    except OverflowError as exc:  # 31 Dec 9999 at -1200 is past the last date there is
        raise ValueError(f"not a date that can be in GMT: {text!r}") from exc


def as_uri(url: str) -> str:
    """``url`` as a URI: a non-ASCII host as its IDNA A-label (RFC 3986 3.2.2), other non-ASCII
    characters (an IRI's, or a decoded request path's) and the ASCII ones no URI holds (space,
    ``<``, ``>``, quotes, braces...) percent-encoded, as RFC 3987 maps an IRI to a URI. Headers
    are sent as Latin-1, and link-format ends a URI at ``>``."""
    with suppress(ValueError):  # a host IDNA cannot write is percent-encoded with the rest
        url = ascii_host(url)
    return quote(url, safe=_URI_SAFE)


def _memento_link(base: str, url: str, capture: Dated, rel: str) -> str:
    return (f'<{base}{replay_path(capture.captured_at, url)}>; rel="{rel}"; '
            f'datetime="{http_date(capture.captured_at)}"')


def _rels(captures: Sequence[Dated], index: int | None) -> dict[int, list[str]]:
    """Relation types of each memento relative to the current one (first, prev, next, last)."""
    rels: dict[int, list[str]] = {}
    last = len(captures) - 1
    rels.setdefault(0, []).append("first")
    rels.setdefault(last, []).append("last")
    if index is not None:
        if index > 0:
            rels.setdefault(index - 1, []).append("prev")
        if index < last:
            rels.setdefault(index + 1, []).append("next")
    return rels


def link_header(url: str, captures: Sequence[Dated], current: int | None,
                base: str = "") -> str:
    """The ``Link`` header of a memento (``current`` is its index) or of a TimeGate (None);
    ``url`` may be an IRI, the header holds URIs."""
    url = as_uri(url)
    parts = [f'<{url}>; rel="original"',
             f'<{base}{TIMEGATE_PREFIX}{url}>; rel="timegate"',
             f'<{base}{TIMEMAP_LINK_PREFIX}{url}>; rel="timemap"; '
             f'type="application/link-format"']
    if captures:
        for index, rels in sorted(_rels(captures, current).items()):
            label = " ".join(rels) + " memento"
            parts.append(_memento_link(base, url, captures[index], label))
    return ", ".join(parts)


def timemap_link(url: str, captures: Sequence[Dated], base: str = "") -> str:
    """A TimeMap in ``application/link-format`` (RFC 7089 section 5), of URIs."""
    url = as_uri(url)
    lines = [f'<{url}>; rel="original"']
    self_link = f'<{base}{TIMEMAP_LINK_PREFIX}{url}>; rel="self"; type="application/link-format"'
    if captures:
        self_link += (f'; from="{http_date(captures[0].captured_at)}"'
                      f'; until="{http_date(captures[-1].captured_at)}"')
    lines.append(self_link)
    lines.append(f'<{base}{TIMEGATE_PREFIX}{url}>; rel="timegate"')
    last = len(captures) - 1
    for index, capture in enumerate(captures):
        rel = ("first last memento" if last == 0 else "first memento" if index == 0
               else "last memento" if index == last else "memento")
        lines.append(_memento_link(base, url, capture, rel))
    return ",\n".join(lines) + "\n"


def timemap_json(url: str, captures: Sequence[Dated], base: str = "") -> dict[str, Any]:
    """The same TimeMap as JSON (the shape Memento aggregators use), of URIs."""
    url = as_uri(url)
    mementos = [{"datetime": capture.captured_at.isoformat() + "Z",
                 "uri": f"{base}{replay_path(capture.captured_at, url)}"}
                for capture in captures]
    result: dict[str, Any] = {
        "original_uri": url,
        "timegate_uri": f"{base}{TIMEGATE_PREFIX}{url}",
        "timemap_uri": {"link_format": f"{base}{TIMEMAP_LINK_PREFIX}{url}",
                        "json_format": f"{base}{TIMEMAP_JSON_PREFIX}{url}"},
        "mementos": {"list": mementos},
    }
    if mementos:
        result["mementos"]["first"] = mementos[0]
        result["mementos"]["last"] = mementos[-1]
    return result
