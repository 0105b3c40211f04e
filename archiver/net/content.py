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


def charset_of(content_type: str, body: bytes = b"") -> str | None:
    """Charset from a BOM, the Content-Type header, or a <meta> tag near the top."""
    for bom, name in _BOMS:
        if body.startswith(bom):
            return name
    match = _CHARSET_RE.search(content_type)
    if match:
        return match.group(1)
    meta = _META_CHARSET_RE.search(body[:4096])
    return meta.group(1).decode("ascii", "replace") if meta else None


def decode_text(body: bytes, charset: str | None = None) -> str:
    """Decode for reading (lossy): BOM, then ``charset``, then <meta charset>, then UTF-8."""
    for bom, name in _BOMS:
        if body.startswith(bom):
            return body[len(bom):].decode(name, errors="replace")
    meta = charset_of("", body)
    for candidate in (charset, meta):
        if candidate:
            try:
                return body.decode(candidate, errors="replace")
            except LookupError:
                continue
    return body.decode("utf-8", errors="replace")


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
