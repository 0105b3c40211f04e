"""What every source reader shares: the post record, fetching, XML safety and dates."""

from __future__ import annotations

import logging
import re
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as defused_fromstring

from archiver.errors import SourceError
from archiver.net.client import FetchError, HttpClient
from archiver.net.content import (
    GZIP_MAGIC,
    ContentError,
    charset_of,
    decode_text,
    inflate,
    undo_content_encoding,
)
from archiver.urls import canonicalize

log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"[A-Za-z_][\w.:-]*")
# Query parameters that only say where a reader came from: a post's URL is the same post
# without them (feed services add utm_* to every item link, sitemaps list the bare URL).
_TRACKING_PREFIXES = ("utm_",)
_TRACKING_NAMES = frozenset({"fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid",
                             "_hsenc", "_hsmi", "mkt_tok"})


@dataclass(frozen=True)
class PostData:
    """One post read from a source, before its links are extracted."""

    url: str
    title: str | None
    published_at: datetime | None  # naive UTC
    html: str
    # The address its source listed, when the page was found at another (``url``, where a
    # redirect ended): a feed listing the same address names the same post.
    listed_as: str | None = None
    # Only a summary of the post (a feed entry without its content): the rest of its
    # references are on its page.
    summary_only: bool = False

    @property
    def names(self) -> frozenset[str]:
        """Every address the post goes by: its own, and the one listed for it."""
        return frozenset(name for name in (self.url, self.listed_as) if name)


@dataclass(frozen=True)
class Document:
    """A fetched resource: final URL, media type and body with its Content-Encoding undone."""

    url: str
    content_type: str
    content_type_header: str
    body: bytes

    @property
    def charset(self) -> str | None:
        """Charset named by the Content-Type header, if any."""
        return charset_of(self.content_type_header)


def fetch_document(client: HttpClient, url: str) -> Document:
    """Fetch ``url`` and return its decoded body; any failure is a :class:`SourceError`."""
    try:
        result = client.fetch(url)
    except FetchError as exc:
        raise SourceError(f"cannot read {url}: {exc.verdict} ({exc.message})") from exc
    final = result.final
    if not 200 <= final.status < 300:
        raise SourceError(f"cannot read {url}: HTTP {final.status} {final.reason}".rstrip())
    if final.truncated in {"disconnect", "time"}:  # half a post would lose its citations
        raise SourceError(f"cannot read {url}: the body was cut short ({final.truncated})")
    if final.truncated:
        log.warning("%s: body cut short (%s limit); reading what arrived", url,
                    final.truncated)
    try:
        body = undo_content_encoding(final.body, final.header("Content-Encoding") or "",
                                     client.max_body_bytes)
        if body.startswith(GZIP_MAGIC):  # e.g. sitemap.xml.gz served as a plain file
            body = inflate(body, 16 + zlib.MAX_WBITS, client.max_body_bytes)
    except ContentError as exc:
        raise SourceError(f"cannot read {url}: {exc}") from exc
    return Document(url=final.url, content_type=final.content_type,
                    content_type_header=final.header("Content-Type") or "", body=body)


def parse_xml(data: bytes, what: str) -> Element:
    """Parse untrusted XML, refusing DTDs and entity declarations; errors are SourceErrors."""
    try:
        root: Element = defused_fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise SourceError(f"{what}: refused XML with a DTD or entity declarations "
                          f"({type(exc).__name__})") from exc
    except ParseError as exc:
        raise SourceError(f"{what}: malformed XML ({exc})") from exc
    return root


def local_name(tag: object) -> str:
    """``{namespace}name`` or ``prefix:name`` -> ``name``."""
    text = tag if isinstance(tag, str) else ""
    return text.rsplit("}", 1)[-1].rsplit(":", 1)[-1]


def namespace_of(tag: str) -> str:
    """``{namespace}name`` -> ``namespace`` ('' when there is none)."""
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


def sniff_root(body: bytes) -> str | None:
    """Qualified name of the first element of an XML/HTML body, skipping the prolog."""
    head = decode_text(body[:16384])
    position = 0
    size = len(head)
    while position < size:
        while position < size and head[position].isspace():
            position += 1
        if head.startswith("<?", position):
            end = head.find("?>", position)
            position = size if end < 0 else end + 2
        elif head.startswith("<!--", position):
            end = head.find("-->", position)
            position = size if end < 0 else end + 3
        elif head.startswith("<!", position):
            position = _after_declaration(head, position)
        elif head.startswith("<", position):
            match = _NAME_RE.match(head, position + 1)
            return match.group(0) if match else None
        else:
            return None
    return None


def _after_declaration(head: str, position: int) -> int:
    """Index after a ``<!DOCTYPE ...>``, internal subset ``[...]`` included."""
    close = head.find(">", position)
    bracket = head.find("[", position)
    if 0 <= bracket < close or (bracket >= 0 and close < 0):
        end = head.find("]", bracket)
        close = head.find(">", end) if end >= 0 else -1
    return len(head) if close < 0 else close + 1


def canonical_or_raw(url: str) -> str:
    """The canonical form of a post URL, tracking parameters dropped, or the URL as given
    when it has none."""
    try:
        return canonicalize(_without_tracking(url.strip()))
    except ValueError:  # InvalidURL, or the normaliser choking on something odd
        return url.strip()


def _without_tracking(url: str) -> str:
    """``url`` without its utm_* and click-id query parameters, the others kept as written."""
    head, mark, rest = url.partition("?")
    if not mark:
        return url
    query, hash_mark, fragment = rest.partition("#")
    kept = [pair for pair in query.split("&") if not _is_tracking(pair.split("=", 1)[0])]
    return head + ("?" + "&".join(kept) if kept else "") + hash_mark + fragment


def _is_tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered.startswith(_TRACKING_PREFIXES) or lowered in _TRACKING_NAMES


def to_utc(value: object) -> datetime | None:
    """A date from any source (datetime, date, ISO 8601 or RFC 2822 text) as naive UTC."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        parsed = _parse_date_text(value.strip())
        if parsed is None:
            return None
        moment = parsed
    else:
        return None
    if moment.tzinfo is not None:
        try:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        except (OverflowError, ValueError):
            return None
    return moment


def _parse_date_text(text: str) -> datetime | None:
    if not text or text.startswith("0000"):
        return None  # WordPress writes 0000-00-00 00:00:00 for "no date"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
