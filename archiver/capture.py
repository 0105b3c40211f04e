"""Snapshot one page, with what it needs to render, into the WARC store.

A capture fetches the page (every redirect hop is recorded), then its requisites — images,
style sheets and what they import, fonts, scripts, posters, iframes and SVG documents one
level deep — on any host, within the page's caps on count, bytes and time, which bind the
fetches in flight too; the URLs a document loads are read from its first ``TEXT_READ_BYTES``.
A payload already stored (by this process or in the index) is written as a small ``revisit``
record instead of again.  robots.txt and "noarchive" are honoured unless
``capture.respect_robots`` is off; a refusal is recorded as such, not as a failure of the
link.  A requisite robots.txt holds back is recorded as skipped with its reason; when that
robots.txt could not be read for a passing reason (a 5xx, a timeout, a reset), the page is
captured again soon (``CaptureResult.retry_soon``), once: ``RETRIED_SOON`` marks it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple, Protocol, cast

from sqlalchemy import Row, Table, bindparam, insert, select
from sqlalchemy.orm import Session

from archiver.bounded import RecentDict
from archiver.check import VALIDATORS
from archiver.fingerprint import HTML_TYPES, TEXT_READ_BYTES
from archiver.models import Capture
from archiver.net.client import ByteBudget, Exchange, FetchError, HttpClient, NotBegun
from archiver.net.content import (
    ContentError,
    charset_of,
    codec_of,
    css_charset,
    decode_text,
    undo_content_encoding,
)
from archiver.replay.rewrite import embedded_urls_css, embedded_urls_html
from archiver.robots import RobotsPolicy, forbids_archiving, passing_problem
from archiver.settings import Settings
from archiver.sketch_pool import Pending, SketchPool
from archiver.warc.records import RecordLocation
from archiver.warc.store import WarcStore, payload_digest

REQUISITE_WORKERS = 4
LOOKUP_CHUNK = 500  # digests per index query
_LOCATION_COLUMNS = ("warc_file", "offset", "length", "record_type", "record_id", "url",
                     "captured_at", "status", "mime", "payload_digest", "truncated")
RECENT_MEMORY = 50_000  # requisites remembered for reuse within capture.requisite_reuse
MEDIA_PREFIXES = ("audio/", "video/")
CSS_TYPE = "text/css"
SVG_TYPE = "image/svg+xml"
XML_DOCUMENT_TYPES = frozenset({"application/xhtml+xml", SVG_TYPE})  # parsed as XML
# The last_capture_error of an archived capture retried soon for a requisite: the capture
# after it is not retried soon again (a CDN answering 503 to bots for good costs one retry).
RETRIED_SOON = "captured again soon: a requisite's robots.txt could not be read"

log = logging.getLogger(__name__)


class DigestLookup(Protocol):
    """Finds stored full responses by payload digest (the oldest one of each)."""

    def __call__(self, digest: str) -> RecordLocation | None:
        """The stored response with that payload, if any."""

    def many(self, digests: Collection[str]) -> dict[str, RecordLocation]:
        """The stored responses of those payloads that have one, by digest, in one query."""


class CaptureOutcome(StrEnum):
    """How a capture attempt ended."""

    ARCHIVED = "archived"
    FAILED = "failed"
    REFUSED = "refused"  # robots.txt or noarchive: the site asked not to be archived
    SKIPPED = "skipped"  # audio or video larger than capture.max_media_bytes


class SkipReason(StrEnum):
    """Why a URL a page needed was not kept."""

    CAPS_SPENT = "the page's bytes or time were spent"
    MEDIA_TOO_LARGE = "media larger than capture.max_media_bytes"
    ROBOTS_REFUSED = "refused by robots.txt"
    ROBOTS_UNREACHABLE = "robots.txt could not be read"


class Skipped(NamedTuple):
    """A URL the capture did not keep, and why."""

    url: str
    reason: SkipReason
    detail: str | None = None  # what went wrong reading robots.txt, say


class KnownSketch(NamedTuple):
    """A page's last text sketch and the payload digest of the body it was made from."""

    digest: str
    sketch: str


@dataclass
class CaptureResult:
    """Records written for one page (its redirect hops and requisites) and how it went."""

    outcome: CaptureOutcome = CaptureOutcome.FAILED
    locations: list[RecordLocation] = field(default_factory=list)
    error: str | None = None
    verdict: str | None = None
    sketch: str | None = None  # text fingerprint of the page, when it was archived
    sketched_digest: str | None = None  # payload digest of the body ``sketch`` was made from
    validators: dict[str, str] | None = None  # the page's ETag, Last-Modified, Content-Length
    requisites: int = 0
    revisits: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    status: int | None = None  # the page's final HTTP status, when it answered
    # A requisite was held back only because its host's robots.txt could not be read, for a
    # reason that passes: the page is captured again at capture.retry_interval to fetch it.
    retry_soon: bool = False

    @property
    def ok(self) -> bool:
        """True when the page itself was archived."""
        return self.outcome is CaptureOutcome.ARCHIVED

    def summary(self) -> str:
        """The outcome as a run counts it: an archived error page says its status, since it
        is kept as evidence but is no copy of the page a reader wants."""
        if self.ok and self.status is not None and self.status >= 400:
            return f"{self.outcome} (HTTP {self.status})"
        return str(self.outcome)


def _media_type(exchange: Exchange) -> str:
    return exchange.content_type


class _Text(NamedTuple):
    """The first TEXT_READ_BYTES of a document, decoded, and the codec a browser reads it with
    (which also encodes the queries of the URLs in an HTML document)."""

    text: str
    codec: str


def _decoded(exchange: Exchange, referrer: str | None = None) -> _Text | None:
    """The first TEXT_READ_BYTES of a text body, decoded (None when they cannot be); a style
    sheet that says nothing of its charset is read in the ``referrer`` document's."""
    try:
        body = undo_content_encoding(exchange.body, exchange.header("Content-Encoding") or "",
                                     TEXT_READ_BYTES, head=True)
    except ContentError:
        return None
    content_type = exchange.header("Content-Type") or ""
    if exchange.content_type == CSS_TYPE:
        charset = css_charset(content_type, body, referrer)
    else:
        charset = charset_of(content_type, body)
    codec = codec_of(charset)
    return _Text(decode_text(body, codec), codec)


@dataclass
class _Budget:
    """What is left of a page's caps.  Its bytes are shared by the requisite fetches in flight,
    chunk by chunk as their bodies are read, so that together they keep no more than is left."""

    count: int
    bytes: ByteBudget
    deadline: float

    def exhausted(self) -> bool:
        """True when the page's bytes or its time are spent."""
        return self.bytes.remaining <= 0 or time.monotonic() >= self.deadline


class _Wanted(NamedTuple):
    """A requisite to fetch: its URL, how deep it is, and the codec of the document that
    loads it (a style sheet that does not say its own charset is read in it)."""

    url: str
    depth: int
    codec: str


class _Children(NamedTuple):
    """What a requisite loads in turn, and the codec it was read with."""

    urls: list[str]
    codec: str

    def wanted(self, depth: int) -> list[_Wanted]:
        """These URLs as requisites ``depth`` deep."""
        return [_Wanted(url, depth, self.codec) for url in self.urls]


class _Fetched(NamedTuple):
    """A requisite's fetch: its exchanges and error, or the URL recorded as skipped instead."""

    exchanges: list[Exchange]
    error: FetchError | None = None
    skipped: Skipped | None = None


class Capturer:
    """Captures pages into one store; shared by the threads of a run."""

    def __init__(self, client: HttpClient, store: WarcStore, settings: Settings,
                 lookup: DigestLookup | None = None, robots: RobotsPolicy | None = None) -> None:
        self.client = client
        self.store = store
        self.settings = settings
        self.lookup = lookup
        self.robots = robots if settings["capture.respect_robots"] else None
        self.max_media: int = settings["capture.max_media_bytes"]
        self.max_requisites: int = settings["capture.max_requisites"]
        self.reuse: float = settings["capture.requisite_reuse"]
        # Requisites captured lately (URL -> when, what they load), shared by the pages of a
        # run: a site's style sheet is fetched once, not once per page.
        self._recent: RecentDict[str, tuple[float, _Children]] = RecentDict(RECENT_MEMORY)
        self._recent_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max(REQUISITE_WORKERS, settings["fetch.concurrency"]),
                                        thread_name_prefix="requisite")
        self._sketches = SketchPool()

    def close(self) -> None:
        """Stop the requisite threads and the sketching process."""
        self._pool.shutdown(wait=True)
        self._sketches.close()

    def _reusable(self, url: str) -> _Children | None:
        """The remembered requisites of ``url`` when it was captured (or is being captured)
        recently enough; None when it must be fetched. Claims the URL when it returns None."""
        now = time.monotonic()
        with self._recent_lock:
            seen = self._recent.get(url)
            if seen is not None and now - seen[0] < self.reuse:
                return seen[1]
            if self.reuse > 0:
                # in flight: other pages will not fetch it too
                self._recent[url] = (now, _Children([], "utf-8"))
            return None

    def _remember(self, url: str, children: _Children) -> None:
        if self.reuse > 0:
            with self._recent_lock:
                self._recent[url] = (time.monotonic(), children)

    def _forget(self, url: str) -> None:
        with self._recent_lock:
            self._recent.pop(url, None)

    # -- one exchange --------------------------------------------------------------------

    def _wants_body(self, _status: int, headers: list[tuple[str, str]]) -> bool:
        """Refuse the body of audio or video announced as larger than the media cap."""
        kind = next((v for k, v in headers if k.lower() == "content-type"), "").lower()
        size = next((v for k, v in headers if k.lower() == "content-length"), "")
        return not (kind.startswith(MEDIA_PREFIXES) and size.isdigit()
                    and int(size) > self.max_media)

    def _too_big_media(self, exchange: Exchange) -> bool:
        return exchange.body_skipped or (
            _media_type(exchange).startswith(MEDIA_PREFIXES)
            and (exchange.truncated in {"length", "time"} or len(exchange.body) > self.max_media))

    def _write(self, exchanges: list[Exchange], result: CaptureResult) -> None:
        """Write exchanges, each as a revisit when its payload is already stored; the index is
        asked once about every payload this process has not written itself."""
        digests = [payload_digest(exchange.body) for exchange in exchanges]
        whole = [200 <= exchange.status < 300 and not exchange.truncated and bool(exchange.body)
                 for exchange in exchanges]
        unknown = {digest for digest, full in zip(digests, whole, strict=True)
                   if full and self.store.written(digest) is None}
        if unknown and self.lookup is not None:
            for found in self.lookup.many(unknown).values():
                self.store.remember(found)  # the next copy needs no query
        for exchange, digest, full in zip(exchanges, digests, whole, strict=True):
            original = self.store.written(digest) if full else None
            location = self.store.write_exchange(exchange, revisit_of=original, digest=digest)
            result.locations.append(location)
            result.revisits += int(original is not None)

    def _fetch(self, url: str, cap: int, budget: _Budget | None = None,
               stop: threading.Event | None = None,
               ) -> tuple[list[Exchange], FetchError | None]:
        """A fetch's exchanges and its error, within the page's bytes and time when given;
        NotBegun when they were spent (or ``stop`` was set) before it began."""
        try:
            return self.client.fetch(
                url, max_body_bytes=cap, want_body=self._wants_body,
                byte_budget=budget.bytes if budget else None,
                deadline=budget.deadline if budget else None, stop=stop).exchanges, None
        except FetchError as exc:
            return exc.exchanges, exc

    # -- a page ----------------------------------------------------------------------------

    def capture(self, url: str, known: KnownSketch | None = None,
                stop: threading.Event | None = None) -> CaptureResult:
        """Capture ``url`` and, for an HTML page, its requisites; never raises on fetch errors.

        ``known`` is the page's last sketch and the payload it was made from: when the page's
        bytes are the same, the sketch is reused instead of made again (a recapture of an
        unchanged page, the usual case, then costs no hashing of its text).

        ``stop``, once set, abandons a capture whose page is still waiting for its host's turn
        (:class:`Stopped`, nothing written); one whose page was fetched is finished.

        A capture that raises (a WARC write failed) leaves nothing for later captures to reuse.
        """
        result = CaptureResult()
        try:
            return self._capture(url, known, stop, result)
        except BaseException:
            self.abandon(result)
            raise

    def abandon(self, result: CaptureResult) -> None:
        """Forget what a capture wrote that will not be indexed (its write or its index
        transaction failed): later captures must neither skip its requisites as captured
        moments ago nor write revisits of its payloads, which replay could not find."""
        self.store.forget(result.locations)
        for location in result.locations:
            self._forget(location.url)

    def _capture(self, url: str, known: KnownSketch | None, stop: threading.Event | None,
                 result: CaptureResult) -> CaptureResult:
        if self.robots is not None and not self.robots.allowed(url, stop):
            problem = self.robots.unreachable(url)
            if problem is None:
                result.outcome, result.error = CaptureOutcome.REFUSED, "robots.txt disallows it"
            else:  # the site did not say no: try again at capture.retry_interval
                result.error = f"robots.txt could not be read ({problem})"
            return result
        deadline = time.monotonic() + self.settings["capture.max_page_time"]
        page_bytes: int = self.settings["capture.max_page_bytes"]
        exchanges, error = self._fetch(url, min(self.client.max_body_bytes, page_bytes),
                                       stop=stop)
        final = exchanges[-1] if exchanges else None
        if final is None:
            result.error = error.message if error else "no response"
            result.verdict = error.verdict if error else None
            return result
        result.status = final.status
        html = (_decoded(final)
                if final.content_type in HTML_TYPES and 200 <= final.status < 300 else None)
        head = html.text[:65536] if html is not None else ""
        if self.robots is not None and forbids_archiving(final, head):
            result.outcome, result.error = CaptureOutcome.REFUSED, "the page says noarchive"
            return result
        if self._too_big_media(final):
            result.outcome = CaptureOutcome.SKIPPED
            result.error = f"media larger than {self.max_media} bytes"
            result.skipped.append(Skipped(final.url, SkipReason.MEDIA_TOO_LARGE))
            return result
        requisites = html is not None and self.settings["capture.requisites"]
        if not requisites:
            self._write(exchanges, result)
        budget = _Budget(self.max_requisites, ByteBudget(
            page_bytes - sum(len(exchange.body) for exchange in exchanges)), deadline)
        sketch: Pending | None = None
        if error is not None:
            result.error, result.verdict = error.message, error.verdict
        else:
            result.outcome = CaptureOutcome.ARCHIVED
            if 200 <= final.status < 300:
                result.validators = {name: value for name in VALIDATORS
                                     if (value := final.header(name))} or None
                result.sketched_digest = payload_digest(final.body)
                if known is not None and known.digest == result.sketched_digest:
                    result.sketch = known.sketch
                else:
                    sketch = self._sketches.submit(
                        final.body, final.header("Content-Type") or "",
                        final.header("Content-Encoding") or "", self.client.max_body_bytes)
        if requisites and html is not None:  # the page's records go with the first wave's
            seen = {url, final.url}
            self._requisites(embedded_urls_html(html.text, final.url, budget.count + len(seen),
                                                html.codec,
                                                final.content_type in XML_DOCUMENT_TYPES),
                             html.codec, seen, budget, result, exchanges)
        if sketch is not None:  # sketched in another process meanwhile
            result.sketch = sketch()
        return result

    def _requisites(self, first: list[str], codec: str, seen: set[str], budget: _Budget,
                    result: CaptureResult, page: list[Exchange]) -> None:
        """Fetch requisites breadth first: CSS imports up to css_depth, iframes one level.

        The ``page``'s own exchanges are written first, with the first wave's (one digest query
        for both). Each requisite goes with the codec of the document that loads it, the one a
        style sheet that does not say its own is read in."""
        claimed: list[str] = []
        try:
            self._waves(first, codec, seen, budget, result, page, claimed)
        except BaseException:  # claimed as in flight: other pages must fetch them themselves
            for url in claimed:
                self._forget(url)
            raise

    def _waves(self, first: list[str], codec: str, seen: set[str], budget: _Budget,
               result: CaptureResult, page: list[Exchange], claimed: list[str]) -> None:
        """The waves of :meth:`_requisites`, noting in ``claimed`` each URL it claims."""
        css_depth: int = self.settings["capture.css_depth"]
        unwritten = page
        wave = [_Wanted(u, 1, codec) for u in first if u not in seen]
        seen.update(wanted.url for wanted in wave)
        while wave and budget.count > 0:
            wave = wave[:budget.count]
            if budget.exhausted():  # out of bytes or time: what is left is not fetched
                result.skipped += [Skipped(wanted.url, SkipReason.CAPS_SPENT) for wanted in wave]
                break
            budget.count -= len(wave)
            fetch: list[_Wanted] = []
            following: list[_Wanted] = []
            for wanted in wave:
                known = self._reusable(wanted.url)
                if known is None:
                    fetch.append(wanted)
                    claimed.append(wanted.url)
                else:  # captured moments ago for another page: its own requisites still count
                    following += known.wanted(wanted.depth + 1)
            kept: list[Exchange] = []
            for wanted, fetched in zip(
                    fetch, self._fetch_all([wanted.url for wanted in fetch], budget),
                    strict=True):
                if fetched.skipped is not None:
                    result.skipped.append(fetched.skipped)
                    if _passing(fetched.skipped):
                        result.retry_soon = True
                kept += fetched.exchanges
                if not fetched.exchanges or fetched.skipped is not None:
                    self._forget(wanted.url)  # not captured, or a redirect chain cut short
                    continue
                final = fetched.exchanges[-1]
                result.requisites += 1
                children = self._children(final, wanted, css_depth)
                self._remember(wanted.url, children)
                following += children.wanted(wanted.depth + 1)
            self._write(unwritten + kept, result)
            unwritten = []
            wave = []
            for child in following:
                if child.url not in seen:
                    seen.add(child.url)
                    wave.append(child)
        if unwritten:  # no wave was fetched (none, or the caps were spent)
            self._write(unwritten, result)

    def _fetch_all(self, urls: list[str], budget: _Budget) -> list[_Fetched]:
        """Fetch requisites in parallel, the first in this thread, which would only wait: one
        pool thread fewer to wake per wave (most waves after the first hold one URL)."""
        if not urls:
            return []
        others = [self._pool.submit(self._fetch_requisite, url, budget) for url in urls[1:]]
        first = self._fetch_requisite(urls[0], budget)
        return [first, *(future.result() for future in others)]

    def _fetch_requisite(self, url: str, budget: _Budget) -> _Fetched:
        """Fetch one requisite within what is left of the page's bytes and time; one that cannot
        begin before either is spent, or that robots.txt holds back, is recorded as skipped."""
        if self.robots is not None and not self.robots.allowed(url):
            return _Fetched([], skipped=_held_back(self.robots, url))
        if budget.bytes.remaining <= 0:
            return _Fetched([], skipped=Skipped(url, SkipReason.CAPS_SPENT))
        try:
            exchanges, error = self._fetch(url, self.client.max_body_bytes, budget)
        except NotBegun as exc:  # the hops before it were received: keep them
            hops = exc.exchanges
            return _Fetched(hops, skipped=Skipped(hops[-1].location or url if hops else url,
                                                  SkipReason.CAPS_SPENT))
        if exchanges and self._too_big_media(exchanges[-1]):
            # Not kept, so not counted against the page.
            budget.bytes.give_back(sum(len(exchange.body) for exchange in exchanges))
            return _Fetched([], skipped=Skipped(exchanges[-1].url, SkipReason.MEDIA_TOO_LARGE))
        return _Fetched(exchanges, error)

    def _children(self, exchange: Exchange, wanted: _Wanted, css_depth: int) -> _Children:
        """Requisites of a requisite: what a style sheet imports, what an iframe loads, what an
        SVG document loads (its <image>, <use> and <feImage> hrefs and style sheets)."""
        none = _Children([], wanted.codec)
        if not 200 <= exchange.status < 300:
            return none
        if exchange.content_type == CSS_TYPE and wanted.depth <= css_depth:
            sheet = _decoded(exchange, wanted.codec)
            if sheet is None:
                return none
            return _Children(embedded_urls_css(sheet.text, exchange.url, self.max_requisites),
                             sheet.codec)
        # an iframe's document, or an SVG one (in <object>, <embed> or <iframe> it loads what
        # it refers to; the HTML collector knows its elements)
        if (exchange.content_type in HTML_TYPES or exchange.content_type == SVG_TYPE) \
                and wanted.depth == 1:
            html = _decoded(exchange)
            if html is None:
                return none
            return _Children(embedded_urls_html(
                html.text, exchange.url, self.max_requisites, html.codec,
                exchange.content_type in XML_DOCUMENT_TYPES), html.codec)
        return none


def _passing(skipped: Skipped) -> bool:
    """True when a requisite was held back by a robots.txt unreadable for a passing reason."""
    return (skipped.reason is SkipReason.ROBOTS_UNREACHABLE
            and passing_problem(skipped.detail or ""))


def _held_back(robots: RobotsPolicy, url: str) -> Skipped:
    """A requisite robots.txt holds back: the site's wish, or its robots.txt unreadable."""
    problem = robots.unreachable(url)
    if problem is None:
        skipped = Skipped(url, SkipReason.ROBOTS_REFUSED)
    else:
        skipped = Skipped(url, SkipReason.ROBOTS_UNREACHABLE, problem)
    log.info("requisite %s not fetched: %s%s", url, skipped.reason,
             f" ({problem})" if problem else "")
    return skipped


class IndexLookup:
    """Digest lookups over the capture index: the oldest full response with each payload."""

    def __init__(self, session_factory: Callable[[], Session]) -> None:
        self.session_factory = session_factory

    def __call__(self, digest: str) -> RecordLocation | None:
        """The stored response with that payload, if any."""
        return self.many([digest]).get(digest)

    def many(self, digests: Collection[str]) -> dict[str, RecordLocation]:
        """The stored responses of those payloads that have one, by digest."""
        found: dict[str, RecordLocation] = {}
        wanted = list(digests)
        with self.session_factory() as session:
            for start in range(0, len(wanted), LOOKUP_CHUNK):
                rows = session.execute(_BY_DIGEST,
                                       {"digests": wanted[start:start + LOOKUP_CHUNK]})
                for row in rows:
                    found.setdefault(row.payload_digest, _location_of_row(row))
        return found


# Built once: a Core query of the columns a location needs (no ORM objects), oldest first.
_CAPTURES = cast(Table, Capture.__table__)
_BY_DIGEST = (select(*(_CAPTURES.c[name] for name in _LOCATION_COLUMNS))
              .where(_CAPTURES.c.payload_digest.in_(bindparam("digests", expanding=True)),
                     _CAPTURES.c.record_type == "response", _CAPTURES.c.truncated.is_(None))
              .order_by(_CAPTURES.c.captured_at, _CAPTURES.c.id))


def _location_of_row(row: Row[Any]) -> RecordLocation:
    return RecordLocation(**{name: getattr(row, name) for name in _LOCATION_COLUMNS})


def index_lookup(session_factory: Callable[[], Session]) -> IndexLookup:
    """A digest lookup over the capture index (the oldest full response with that payload)."""
    return IndexLookup(session_factory)


def _rows(locations: list[RecordLocation]) -> list[dict[str, object]]:
    return [{"url": loc.url, "url_key": loc.url_key, "captured_at": loc.captured_at,
             "record_type": loc.record_type, "status": loc.status, "mime": loc.mime,
             "payload_digest": loc.payload_digest, "warc_file": loc.warc_file,
             "offset": loc.offset, "length": loc.length, "record_id": loc.record_id,
             "truncated": loc.truncated} for loc in locations]


def index_new_locations(session: Session, locations: list[RecordLocation]) -> int:
    """Index records this process has just written (none of them can be indexed yet)."""
    if locations:  # a Core executemany: no ORM bulk machinery for rows nobody loads
        session.execute(insert(_CAPTURES), _rows(locations))
    return len(locations)


def index_locations(session: Session, locations: list[RecordLocation]) -> int:
    """Add index rows for records on disk; rows already present are left alone."""
    by_file: dict[str, list[RecordLocation]] = {}
    for location in locations:
        by_file.setdefault(location.warc_file, []).append(location)
    fresh: list[RecordLocation] = []
    for warc_file, group in by_file.items():
        known: set[int] = set()
        offsets = [loc.offset for loc in group]
        for start in range(0, len(offsets), 500):
            known.update(session.scalars(select(Capture.offset).where(
                Capture.warc_file == warc_file, Capture.offset.in_(offsets[start:start + 500]))))
        fresh += [loc for loc in group if loc.offset not in known]
    return index_new_locations(session, fresh)
