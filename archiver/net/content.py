"""Bodies as text: undoing Content-Encoding (bounded, so a gzip bomb cannot blow up memory),
finding the charset, and decoding."""

from __future__ import annotations

import codecs
import re
import zlib

GZIP_MAGIC = b"\x1f\x8b"
_CHARSET_RE = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)
_META_CHARSET_RE = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
         (codecs.BOM_UTF16_BE, "utf-16-be"))
# A style sheet's own declaration: exactly these bytes at its very start (CSS Syntax 3.2).
_CSS_CHARSET_RE = re.compile(rb'@charset "([\x00-\x21\x23-\x7f]*)";')
# Labels browsers read as another encoding (the Encoding Standard), by Python codec name.
_AS_BROWSERS_READ = {"iso8859-1": "cp1252", "ascii": "cp1252", "gb2312": "gbk",
                     "euc_kr": "cp949", "iso8859-9": "cp1254", "tis-620": "cp874"}


# A body without Content-Type that browsers take for HTML: after ASCII whitespace, one of the
# MIME Sniffing Standard's HTML signatures (7.1). Chromium matches them as prefixes ("<pre"
# is "<p"); the Standard wants a space or '>' after the tag, a subset of Chromium's.
_HTML_SIGNATURE = re.compile(
    rb"[\t\n\x0b\x0c\r ]*<(?:!doctype html|html|head|script|iframe|h1|div|font|table|a"
    rb"|style|title|b|body|br|p|!--)", re.IGNORECASE)
SNIFF_BYTES = 1024  # what Chromium sniffs of a body

# The errors= handler that decodes as browsers do: a byte a single-byte (charmap) codec lacks
# in 0x80-0x9F is the C1 control of that number, as in the Encoding Standard's windows-125x
# indexes (Python's cp1252 lacks 0x81, 0x8D, 0x8F, 0x90 and 0x9D); any other is U+FFFD.
AS_BROWSERS = "archiver-as-browsers"


def _as_browsers(exc: UnicodeError) -> tuple[str | bytes, int]:
    """Decode error handler (``AS_BROWSERS``)."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    if exc.encoding != "charmap":
        return codecs.replace_errors(exc)
    bad = exc.object[exc.start:exc.end]
    return "".join(chr(byte) if 0x80 <= byte <= 0x9F else "\ufffd" for byte in bad), exc.end


codecs.register_error(AS_BROWSERS, _as_browsers)


class ContentError(ValueError):
    """A body that cannot be decoded (bad compression, unknown coding, over the size cap)."""


def inflate(data: bytes, wbits: int, limit: int, *, head: bool = False) -> bytes:
    """Decompress zlib/gzip/raw deflate data, refusing output larger than ``limit`` bytes (with
    ``head``, keeping only its first ``limit`` bytes instead)."""
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(data, limit if head else limit + 1)
    except zlib.error as exc:
        raise ContentError(f"bad compressed body ({exc})") from exc
    if len(out) > limit:
        raise ContentError(f"body larger than {limit} bytes once decompressed")
    return out


def undo_content_encoding(body: bytes, encoding: str, limit: int, *,
                          head: bool = False) -> bytes:
    """Undo gzip/deflate Content-Encoding (the HTTP client keeps bodies as sent on the wire);
    a body over ``limit`` bytes is refused, or with ``head`` cut to its first ``limit`` bytes
    however much more it would inflate to (what is parsed of a page, not what is stored)."""
    for coding in reversed([part.strip().lower() for part in encoding.split(",")]):
        if coding in ("", "identity"):
            continue
        if coding in ("gzip", "x-gzip"):
            body = inflate(body, 16 + zlib.MAX_WBITS, limit, head=head)
        elif coding == "deflate":
            try:
                body = inflate(body, zlib.MAX_WBITS, limit, head=head)
            except ContentError:
                body = inflate(body, -zlib.MAX_WBITS, limit, head=head)  # raw deflate
        else:
            raise ContentError(f"unsupported Content-Encoding {coding!r}")
    return body[:limit] if head else body


def _bom_or_header(content_type: str, body: bytes) -> str | None:
    """The charset a BOM, else the Content-Type header, names: what outranks the document."""
    for bom, name in _BOMS:
        if body.startswith(bom):
            return name
    match = _CHARSET_RE.search(content_type)
    return match.group(1) if match else None


def charset_of(content_type: str, body: bytes = b"") -> str | None:
    """Charset from a BOM, the Content-Type header, or a <meta> tag near the top."""
    named = _bom_or_header(content_type, body)
    if named:
        return named
    meta = _META_CHARSET_RE.search(body[:4096])
    return meta.group(1).decode("ascii", "replace") if meta else None


def css_charset(content_type: str, body: bytes, referrer: str | None = None) -> str | None:
    """A style sheet's charset as a browser finds it (CSS Syntax 3.2): BOM, the Content-Type
    header, a leading ``@charset``, then the encoding of the document that loaded it."""
    named = _bom_or_header(content_type, body)
    if named:
        return named
    declared = _CSS_CHARSET_RE.match(body)
    if declared:
        name = declared.group(1).decode("ascii")
        # a sheet whose bytes say @charset in ASCII is not UTF-16, whatever it claims
        return "utf-8" if name.lower().startswith("utf-16") else name
    return referrer


def sniffs_as_html(body: bytes) -> bool:
    """True when a browser takes a body without Content-Type for HTML: leading whitespace
    skipped, one of the HTML signatures (a BOM first makes it text, in the Standard and in
    Chromium)."""
    return _HTML_SIGNATURE.match(body, 0, SNIFF_BYTES) is not None


def codec_of(charset: str | None) -> str:
    """The Python codec a browser decodes ``charset`` with (UTF-8 when it is unknown)."""
    try:
        name = codecs.lookup(charset or "utf-8").name
    except LookupError:
        return "utf-8"
    return _AS_BROWSERS_READ.get(name, name)


def decode_text(body: bytes, charset: str | None = None) -> str:
    """Decode for reading (lossy, as browsers decode): BOM, then ``charset``, then <meta
    charset>, then UTF-8."""
    for bom, name in _BOMS:
        if body.startswith(bom):
            return body[len(bom):].decode(name, errors=AS_BROWSERS)
    meta = charset_of("", body)
    for candidate in (charset, meta):
        if candidate:
            try:
                return body.decode(candidate, errors=AS_BROWSERS)
            except LookupError:
                continue
    return body.decode("utf-8", errors=AS_BROWSERS)


def c1_byte(char: str, codec: str) -> bytes | None:
    """The byte a browser writes ``char`` as in ``codec`` when it is a C1 control that Python's
    table of the codec lacks (U+0081 is 0x81 in windows-1252), else None."""
    if not "\x80" <= char <= "\x9f":
        return None
    byte = bytes([ord(char)])
    return byte if byte.decode(codec, errors=AS_BROWSERS) == char else None


def decode_reversibly(body: bytes, charset: str | None) -> tuple[str, str]:
    """Decode so that encoding the text with the returned charset gives the same bytes."""
    for candidate in (charset, "utf-8", "cp1252"):
        if not candidate:
            continue
        try:
            return body.decode(candidate), candidate
        except (LookupError, UnicodeDecodeError):
            continue
    return body.decode("latin-1"), "latin-1"
