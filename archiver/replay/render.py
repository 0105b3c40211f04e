"""Turn an indexed capture into the response a reader gets: status, safe headers, rewritten body.

Archived headers are not trusted: only a few that describe the body are passed on; every
other one is kept for the curious as ``X-Archive-Orig-<name>``; cookies, security policies and
framing headers of the original site are dropped; lengths are recomputed. A header that cannot
be sent (its name no token, a control character such as CR in its value) is dropped, and
non-ASCII in a value is sent percent-encoded (UTF-8).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sqlalchemy.orm import Session
from warcio.archiveiterator import ArchiveIterator

from archiver.clock import warc_timestamp
from archiver.errors import StorageError
from archiver.models import Capture
from archiver.net.content import charset_of, decode_reversibly, sniffs_as_html
from archiver.replay.lookup import original_response
from archiver.replay.rewrite import UrlRewriter, rewrite_css, rewrite_html
from archiver.warc.records import RecordError, status_code
from archiver.warc.store import WarcStore, open_record

DEFAULT_MAX_DECODED = 256 * 1024 * 1024
PASSED_HEADERS = frozenset({"content-type", "content-language", "last-modified"})
DROPPED_HEADERS = frozenset({
    "set-cookie", "set-cookie2", "content-security-policy",
    "content-security-policy-report-only", "strict-transport-security", "public-key-pins",
    "x-frame-options", "access-control-allow-origin", "access-control-allow-credentials",
    "report-to", "nel", "alt-svc", "clear-site-data", "refresh", "link",
})
FRAMING_HEADERS = frozenset({"transfer-encoding", "content-encoding", "content-length",
                             "connection", "keep-alive"})
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a header name (RFC 9110 5.1)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # all but HTAB: a server refuses them
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")


# A record larger than this whose body is sent as archived (not rewritten: media, downloads)
# is read while it is sent, never held: an imported video of gigabytes replays in a few KB.
STREAM_ABOVE = 4 * 1024 * 1024
STREAM_CHUNK = 1 << 16
MARKUP_TYPES = frozenset({"text/html", "application/xhtml+xml", "image/svg+xml"})
XML_TYPES = frozenset({"application/xhtml+xml", "image/svg+xml"})  # parsed as XML
REWRITTEN_TYPES = MARKUP_TYPES | {"text/css"}


@dataclass(frozen=True, slots=True)
class ArchivedResponse:
    """What replay sends for one capture (immutable: rendered answers are cached and shared).
    A large body is not held: ``stream()`` reads it from its record while it is sent."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    stream: Callable[[], Iterator[bytes]] | None = None

    @property
    def length(self) -> int | None:
        """The body's length in bytes, when it is known before it is sent."""
        if self.stream is None:
            return len(self.body)
        for name, value in self.headers:
            if name == "Content-Length":
                return int(value)
        return None


class ReplayError(StorageError):
    """A capture that cannot be replayed (the view answers 502 with the reason)."""


def _payload_capture(session: Session, capture: Capture) -> Capture:
    """The capture whose record holds the payload: itself, or the response a revisit repeats."""
    original = original_response(session, capture)
    if original is None:  # a crawl imported without the earlier WARC files it refers to
        raise ReplayError(f"revisit {capture.record_id} repeats a payload that is not in the "
                          f"archive ({capture.payload_digest})")
    return original


def _read(store: WarcStore, capture: Capture) -> Any:
    """The warcio record of a capture, read whole into memory."""
    return open_record(store.read_record_bytes(capture.warc_file, capture.offset,
                                               capture.length))


@contextmanager
def _opened(store: WarcStore, capture: Capture) -> Iterator[Any]:
    """The warcio record of a capture, read from its file (or a ranged GET) as it is used."""
    with store.open_range(capture.warc_file, capture.offset, capture.length) as source:
        try:
            yield next(iter(ArchiveIterator(source)))
        except StopIteration as exc:
            raise StorageError("no WARC record at that location") from exc


def document_csp(origin: str, scripts: bool) -> str:
    """CSP of an archived document: an opaque sandbox that loads nothing from the live web."""
    sandbox = "sandbox allow-scripts" if scripts else "sandbox"
    sources = f"{origin} data: blob:" if origin else "'self' data: blob:"
    return f"{sandbox}; default-src {sources} 'unsafe-inline' 'unsafe-eval'; form-action 'none'"


class TooLargeError(ReplayError):
    """An archived body larger than replay will decode (a decompression bomb, say)."""


def _status(http_headers: Any) -> int:
    """The archived status, refused (ReplayError) unless it is a final answer HTTP can send:
    1xx is interim (101 would claim a protocol switch on a plain GET), and 0 or above 599 is
    no status at all."""
    try:
        status = status_code(http_headers.get_statuscode() or "200")
    except RecordError:
        status = None
    if status is None:
        raise ReplayError(f"the archived HTTP status line is unreadable: "
                          f"{http_headers.protocol} {http_headers.statusline}"[:200])
    if not 200 <= status <= 599:
        raise ReplayError(f"the archived response has status {status}, which is not a final "
                          "HTTP answer (200-599) a browser can be sent")
    return status


def _read_decoded(record: Any, max_bytes: int) -> bytes | None:
    """A record's decoded body, or None when it is larger than ``max_bytes``."""
    body = record.content_stream().read(max_bytes + 1)
    return None if len(body) > max_bytes else bytes(body)


def _sent_as_archived(capture: Capture, rewrite: bool) -> bool:
    """Whether the body is sent as it was archived (not rewritten), so it may be streamed."""
    return not rewrite or (capture.mime is not None and capture.mime not in REWRITTEN_TYPES)


def _compressed(http_headers: Any) -> bool:
    """Whether an archived body was sent compressed (a Content-Encoding other than identity)."""
    return http_headers is not None and \
        (http_headers.get_header("Content-Encoding") or "identity").strip().lower() != "identity"


def _identity_length(record: Any, http_headers: Any) -> int | None:
    """The length of a record's body as sent, when nothing (chunks, compression) changes it
    on the way: what is left of the record's block after its HTTP head."""
    if _compressed(http_headers) or (
            http_headers is not None and http_headers.get_header("Transfer-Encoding")):
        return None
    left = getattr(record.raw_stream, "limit", None)
    return left if isinstance(left, int) else None


def _body_reader(store: WarcStore, payload: Capture) -> Callable[[], Iterator[bytes]]:
    """Reads a record's decoded body chunk by chunk, each time it is called."""
    def chunks() -> Iterator[bytes]:
        with _opened(store, payload) as record:
            content = record.content_stream()
            while chunk := content.read(STREAM_CHUNK):
                yield chunk
    return chunks


def _sendable(name: str, value: str) -> str | None:
    """``value`` as a header can carry it (headers go out as Latin-1, and what is not ASCII
    in an archived one is mostly raw UTF-8: percent-encoded), or None when the header cannot
    be sent at all (its name is no token, or a control character is in its value)."""
    if not _TOKEN.fullmatch(name) or _CONTROL.search(value):
        return None
    return _NON_ASCII.sub(lambda found: quote(found.group()), value)


def _archived_headers(http_headers: Any, payload_record: Any, rewriter: UrlRewriter,
                      modifier: str) -> tuple[list[tuple[str, str]], str]:
    """The archived headers a reader is sent, and the archived Content-Type."""
    headers: list[tuple[str, str]] = []
    content_type = ""
    if http_headers is None:  # a resource record: its own Content-Type describes the body
        content_type = _sendable("Content-Type",
                                 payload_record.rec_headers.get_header("Content-Type") or "") or ""
        if content_type:
            headers.append(("Content-Type", content_type))
    for name, archived in (http_headers.headers if http_headers else []):
        value = _sendable(name, archived)
        lowered = name.lower()
        if value is None:
            continue
        if lowered == "content-type":
            content_type = value
        if lowered == "location":
            location = _sendable(name, rewriter.rewrite(value.strip(), modifier))
            if location:
                headers.append(("Location", location))
        elif lowered in PASSED_HEADERS:
            headers.append((name, value))
        elif lowered not in DROPPED_HEADERS and lowered not in FRAMING_HEADERS:
            headers.append((f"X-Archive-Orig-{name}", value))
    if http_headers is None or not content_type:
        # Nothing says what the body is: the browser must not guess HTML from it.
        headers.append(("X-Content-Type-Options", "nosniff"))
    return headers, content_type


def render_capture(session: Session, store: WarcStore, capture: Capture,
                   prefix: str = "/web/", *, rewrite: bool = True, scripts: bool = False,
                   origin: str = "", max_bytes: int = DEFAULT_MAX_DECODED,
                   modifier: str = "") -> ArchivedResponse:
    """The reader's response for ``capture``, with HTML, SVG and CSS rewritten into the
    archive.

    ``rewrite=False`` gives the archived bytes as they are (pywb's ``id_``); ``origin`` is
    the only place the document may load from (the archive itself). A body that decodes to
    more than ``max_bytes`` raises :class:`TooLargeError` instead of filling memory, unless
    it is sent as archived from a record over ``STREAM_ABOVE`` bytes: that body is streamed
    (``ArchivedResponse.stream``). An archived redirect keeps the request's ``modifier``, so
    an image behind a redirect is still answered bare. A capture that cannot be answered as
    archived (an unreadable status line, a status outside 200-599, a revisit of a payload not
    in the archive) raises :class:`ReplayError`; a resource record is sent with its record's
    Content-Type and ``nosniff``, any answer archived without a Content-Type with ``nosniff``.
    """
    payload = _payload_capture(session, capture)
    head_record = _read(store, capture) if capture is not payload else None
    rewriter = UrlRewriter(base_url=capture.url, timestamp=warc_timestamp(capture.captured_at),
                           prefix=prefix)
    stream: Callable[[], Iterator[bytes]] | None = None
    as_archived = _sent_as_archived(capture, rewrite)
    with ExitStack() as stack:
        large = as_archived and payload.length > STREAM_ABOVE
        if large:  # not read whole just for its headers
            payload_record = stack.enter_context(_opened(store, payload))
        else:
            payload_record = _read(store, payload)
        http_headers = (head_record.http_headers if head_record is not None else None) \
            or payload_record.http_headers
        status = _status(http_headers) if http_headers else 200
        headers, content_type = _archived_headers(http_headers, payload_record, rewriter,
                                                  modifier)
        # Only a body archived without compression is streamed: it is no larger than its
        # record, where a compressed one may inflate a thousandfold (a bomb) on every request.
        streamable = as_archived and not _compressed(payload_record.http_headers)
        length = _identity_length(payload_record, payload_record.http_headers)
        held = None if large and streamable else \
            _read_decoded(payload_record, STREAM_ABOVE if streamable else max_bytes)
    if held is None and not streamable:
        raise TooLargeError(f"the archived body is larger than {max_bytes} bytes once decoded")
    if held is None:
        body, stream = b"", _body_reader(store, payload)
    else:
        body = held
    media = content_type.split(";", 1)[0].strip().lower()
    if stream is not None or not rewrite:
        pass
    elif media in MARKUP_TYPES or (not media and sniffs_as_html(body)):
        # an SVG document loads what it names too (<image href>, <use>, style sheets)
        text, charset = decode_reversibly(body, charset_of(content_type, body))
        body = rewrite_html(text, rewriter, media in XML_TYPES).encode(
            charset, "xmlcharrefreplace")
        if not media:  # rewritten as HTML: say so, as nosniff keeps the browser from guessing
            headers.append(("Content-Type", f"text/html; charset={charset}"))
    elif media == "text/css":
        text, charset = decode_reversibly(body, charset_of(content_type))
        body = rewrite_css(text, rewriter).encode(charset, "xmlcharrefreplace")
    if stream is None:
        length = len(body)
    headers += [
        ("Content-Security-Policy", document_csp(origin, scripts)),
        # Sandboxed documents have an opaque origin: fonts and crossorigin images they load
        # from the archive need CORS. Archived responses are public; no credentials go along.
        ("Access-Control-Allow-Origin", "*"),
        ("Memento-Datetime", capture.captured_at.strftime("%a, %d %b %Y %H:%M:%S GMT")),
    ]
    if length is not None:
        headers.append(("Content-Length", str(length)))
    return ArchivedResponse(status=status, headers=tuple(headers), body=body, stream=stream)
