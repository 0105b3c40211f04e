"""Byte-preserving replay rewriting: point URLs in archived HTML and CSS at the archive.

Archived documents are served at ``/web/<timestamp><modifier>/<original url>``. Only URL values
change; every other character of the document is copied through untouched, so this is a small
regex-driven tokenizer (following the HTML tokenizer's rules for tags, attributes, comments and
raw-text elements) rather than a parse-and-serialise round trip, which would normalise markup.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import lru_cache
from html import unescape as _html_unescape
from html.entities import html5 as _HTML5_ENTITIES
from urllib.parse import urlsplit

from archiver.net.content import c1_byte
from archiver.urls import resolve

__all__ = ["EMBED", "NAV", "UrlRewriter", "rewrite_css", "rewrite_html"]

_log = logging.getLogger(__name__)

NAV = ""  # modifier for navigational URLs: replayed in the page/frame view
EMBED = "mp_"  # modifier for embedded resources: served bare

_WS = "\t\n\f\r "  # ASCII whitespace as the HTML and CSS tokenizers define it
_C0_SPACE = "".join(map(chr, range(0x21)))  # what the URL parser trims from both ends
_HTTP_SCHEMES = frozenset({"http", "https"})
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_ABS_HTTP = re.compile(r"https?://[^/?#\\]", re.I)
_PLAIN_ABS_HTTP = re.compile(r"https?://[^/?#\\]")
_NETWORK_PATH = re.compile(r"//[^/?#\\]")

# Targets the shortcuts in _resolve may not take: whitespace/controls and backslashes (the URL
# parser cleans them), dot segments, empty query/fragment, IPv6 brackets, ";".
_NOT_PLAIN = re.compile(r"[\x00-\x20\x7f;\\\[\]]|(?:^|/)\.\.?(?:[/?#]|$)|\?(?:#|$)|#$")


@lru_cache(maxsize=64)
def _base_parts(base: str) -> tuple[str, str, str, str] | None:
    """(scheme, origin, directory, address without query) of a plain http(s) base URL."""
    if _ABS_HTTP.match(base) is None or _NOT_PLAIN.search(base) is not None:
        return None
    try:
        parts = urlsplit(base)
    except ValueError:
        return None
    origin = f"{parts.scheme}://{parts.netloc}"
    path = parts.path
    return parts.scheme, origin, origin + (path[: path.rfind("/") + 1] or "/"), origin + path


def _resolve(base: str, target: str) -> str:
    """``target`` resolved against ``base`` as a browser resolves it (the WHATWG URL standard),
    with string shortcuts for the common plain cases; ValueError when it is no URL.

    Python's urljoin follows RFC 3986, and browsers differ where it matters here: on an http
    page ``https:evil.example/x``, ``https:/evil.example`` and ``https:\\evil.example`` are
    all https://evil.example/..., which urljoin leaves relative-looking or resolves inside the
    page's site; left unrewritten, they took the reader out of the archive to the live web.
    """
    parts = _base_parts(base)
    if parts is None or _NOT_PLAIN.search(target) is not None:
        return resolve(target, base)
    scheme, origin, directory, document = parts
    if _PLAIN_ABS_HTTP.match(target) is not None:
        return target
    if _NETWORK_PATH.match(target) is not None:
        return f"{scheme}:{target}"
    first = target[0]
    if first == "?":
        return document + target
    # a fragment alone, a scheme, or "//" with no host after it
    if first == "#" or target.startswith("//") or _SCHEME.match(target) is not None:
        return resolve(target, base)
    return (origin if first == "/" else directory) + target


@dataclass(frozen=True, slots=True)
class UrlRewriter:
    """Maps original URLs to archive URLs for one archived document."""

    base_url: str
    timestamp: str
    prefix: str = "/web/"

    def rewrite(self, url: str, modifier: str = "") -> str:
        """Archive URL for ``url`` resolved against base_url; non-http(s) or bad input unchanged."""
        target = url.strip(_C0_SPACE)
        if not target or target[0] == "#":
            return url
        scheme = _SCHEME.match(target)
        if scheme is not None and scheme.group(1).lower() not in _HTTP_SCHEMES:
            return url
        try:
            absolute = _resolve(self.base_url, target)
        except ValueError:  # no URL to a browser either (an unbalanced IPv6 bracket, say)
            return url
        if _ABS_HTTP.match(absolute) is None:
            return url
        return f"{self.prefix}{self.timestamp}{modifier}/{absolute}"

    def rewrite_base(self, url: str, modifier: str) -> str:
        """Rewrite a ``<base href>`` (a base is not something the page loads)."""
        return self.rewrite(url, modifier)


# --------------------------------------------------------------------------------------------
# HTML

# A whole start or end tag, attributes included, following the tokenizer: a tag ends at the first
# ``>`` outside a quoted value. Possessive quantifiers keep the scan linear on hostile input; a
# failed match therefore means the tag runs to EOF (an unclosed quote, or no ``>`` at all).
_ATTR_VALUE_SRC = rf"(?:\"[^\"]*+\"|'[^']*+'|[^{_WS}>\"'][^{_WS}>]*+|(?=>))"


def _attrs_src(name_guard: str = "") -> str:
    """Regex source for a tag's attribute list (no groups); name_guard can veto attribute names."""
    return (
        rf"(?:[{_WS}/]*+{name_guard}[^{_WS}/>][^{_WS}/=>]*+"
        rf"(?:[{_WS}]*+=[{_WS}]*+{_ATTR_VALUE_SRC}|(?![{_WS}]*+=)))*+"
    )


_TAG = re.compile(rf"<(/?)([A-Za-z][^{_WS}/>]*+)({_attrs_src()})[{_WS}/]*+>")
# One attribute inside an already matched tag: 1 name, then 2 "value" | 3 'value' | 4 value.
_ATTR = re.compile(
    rf"[{_WS}/]*+([^{_WS}/>][^{_WS}/=>]*+)"
    rf"(?:[{_WS}]*+=[{_WS}]*+(?:\"([^\"]*+)\"|'([^']*+)'|([^{_WS}>\"'][^{_WS}>]*+)|))?+"
)
_QUOTE_OF_GROUP = {2: '"', 3: "'", 4: ""}
_TAG_OPEN = re.compile(r"</?[A-Za-z]")
_COMMENT = re.compile(r"<!--(?:-?>|.*?(?:--!?>|\Z))", re.S)
_STYLE_HINT = re.compile("style", re.I)
# The commonest tag of all, <a href="...">, with nothing else and no character reference: its
# value is the URL as it is, so the general attribute pass can be skipped.
_PLAIN_A_HREF = re.compile(rf'[{_WS}]++href="([^"&]*+)"')
_RAW_TEXT_END = {
    name: re.compile(rf"</{name}[{_WS}/>]", re.I)
    for name in ("script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes")
}

_LAZY_ATTRS = {"data-src": EMBED, "data-srcset": EMBED, "data-lazy-src": EMBED}
_ATTR_MODIFIERS: dict[str, dict[str, str]] = {
    "a": {"href": NAV, "xlink:href": NAV},
    "area": {"href": NAV},
    "form": {"action": NAV},
    "button": {"formaction": NAV},
    "input": {"src": EMBED, "formaction": NAV},
    "blockquote": {"cite": NAV},
    "q": {"cite": NAV},
    "del": {"cite": NAV},
    "ins": {"cite": NAV},
    "meta": {"content": NAV},
    "base": {"href": EMBED},
    # data-src and friends: lazy-loading scripts (lazysizes, WordPress plugins) swap them in
    # for the placeholder in src as the page scrolls; they are what the reader sees.
    "img": {"src": EMBED, "srcset": EMBED, **_LAZY_ATTRS},
    "source": {"src": EMBED, "srcset": EMBED, **_LAZY_ATTRS},
    "link": {"href": EMBED, "imagesrcset": EMBED},
    "script": {"src": EMBED, "href": EMBED, "xlink:href": EMBED},
    "iframe": {"src": EMBED, "srcdoc": EMBED},
    "frame": {"src": EMBED},
    "video": {"src": EMBED, "poster": EMBED},
    "audio": {"src": EMBED},
    "track": {"src": EMBED},
    "embed": {"src": EMBED},
    "object": {"data": EMBED},
    "body": {"background": EMBED},
    "table": {"background": EMBED},
    "td": {"background": EMBED},
    "th": {"background": EMBED},
    "image": {"href": EMBED, "xlink:href": EMBED},
    "use": {"href": EMBED, "xlink:href": EMBED},
    "feimage": {"href": EMBED, "xlink:href": EMBED},
}
# <link> relations whose href a browser loads; any other <link> (canonical, alternate, ...)
# points at a page, not at a resource.
_LINK_RESOURCE_RELS = frozenset({
    "stylesheet", "icon", "apple-touch-icon", "apple-touch-icon-precomposed", "mask-icon",
    "preload", "modulepreload", "prefetch", "manifest", "image_src",
})
_LINK_PAGE_MODIFIERS = {"href": NAV, "imagesrcset": EMBED}
_SRCSET_ATTRS = frozenset({"srcset", "imagesrcset", "data-srcset"})
# An <iframe srcdoc> holds a whole document, rewritten in turn; nested ones only this deep (a
# hostile page could nest them until the recursion gives out).
MAX_SRCDOC_DEPTH = 3
# tag -> (attribute, other attribute, value that other one must have for the first to be a URL)
_GATED_ATTRS = {
    "meta": ("content", "http-equiv", "refresh"),
    "input": ("src", "type", "image"),
}

# Everything up to the next token that may need rewriting, in one C-level match: text, comments,
# doctypes, end tags and start tags that are neither URL-bearing, raw-text nor carry a style
# attribute. It stops at the "<" of anything else, which run() then handles token by token.
_INTERESTING_TAGS = "|".join(
    sorted({*_ATTR_MODIFIERS, *_RAW_TEXT_END, "plaintext"}, key=len, reverse=True)
)
_SKIP = re.compile(
    "(?:"
    + "|".join((
        r"[^<]++",
        r"<(?![A-Za-z!?/])",
        r"<!--(?:-?>|.*?--!?>)",
        r"<!(?!--)[^>]*+>",
        r"<\?[^>]*+>",
        r"</(?![A-Za-z])[^>]*+>",
        rf"</[A-Za-z][^{_WS}/>]*+{_attrs_src()}[{_WS}/]*+>",
        rf"<(?!(?:{_INTERESTING_TAGS})[{_WS}/>])[A-Za-z][^{_WS}/>]*+"
        rf"{_attrs_src(rf'(?!style[{_WS}/=>])')}[{_WS}/]*+>",
    ))
    + ")*+",
    re.I | re.S,
)

_CHARREF = re.compile(r"&(?:#[xX][0-9a-fA-F]+;?|#[0-9]+;?|([A-Za-z][A-Za-z0-9]*)(;?))")
_UNQUOTED_UNSAFE = re.compile(rf"[{_WS}>]")
_SRCSET_URL = re.compile(rf"[{_WS},]*+([^{_WS}]++)")
_SRCSET_DESCRIPTORS = re.compile(r"[^,(]*+(?:\([^)]*+\)?[^,(]*+)*+,?")
_REFRESH = re.compile(
    rf"([{_WS}]*+(?=[0-9.])[0-9]*+(?:\.[0-9.]*+)?[{_WS}]*+[;,]?[{_WS}]*+"
    rf"(?:[Uu][Rr][Ll][{_WS}]*+=[{_WS}]*+)?)(.*)",
    re.S,
)


def _charref(match: re.Match[str]) -> str:
    name = match.group(1)
    if name is None:
        return _html_unescape(match.group(0))
    if match.group(2):
        return _HTML5_ENTITIES.get(name + ";", match.group(0))
    # In attribute values a semicolon-less legacy reference followed by "=" stays literal, and
    # one followed by more alphanumerics (the regex took them all) is not a reference at all.
    end = match.end()
    if name in _HTML5_ENTITIES and match.string[end : end + 1] != "=":
        return _HTML5_ENTITIES[name]
    return match.group(0)


def _unescape_attr(raw: str) -> str:
    """Decode character references in an attribute value the way browsers do."""
    return _CHARREF.sub(_charref, raw) if "&" in raw else raw


def _escape_attr(value: str, quote: str, xml: bool = False) -> str:
    """Minimal re-escaping of a rewritten attribute value for its original quoting style;
    with ``xml``, '<' too, which XML forbids raw in a value (a srcdoc in XHTML holds markup)."""
    value = value.replace("&", "&amp;")
    if xml:
        value = value.replace("<", "&lt;")
    if quote == '"':
        return value.replace('"', "&quot;")
    if quote == "'":
        return value.replace("'", "&#39;")
    return _UNQUOTED_UNSAFE.sub(lambda m: f"&#{ord(m.group())};", value)


def _rewrite_srcset(value: str, rewriter: UrlRewriter, modifier: str) -> str:
    """Rewrite each candidate URL of a srcset, keeping separators and descriptors."""
    out: list[str] = []
    last = pos = 0
    while (match := _SRCSET_URL.match(value, pos)) is not None:
        start, end = match.span(1)
        url = match.group(1)
        bare = url.rstrip(",")
        if len(bare) != len(url):  # trailing commas end a candidate that has no descriptors
            end = start + len(bare)
            pos = match.end()
        else:
            descriptors = _SRCSET_DESCRIPTORS.match(value, end)
            pos = end if descriptors is None else descriptors.end()
        new = rewriter.rewrite(bare, modifier)
        if new != bare:
            out.append(value[last:start])
            out.append(new)
            last = end
    if not out:
        return value
    out.append(value[last:])
    return "".join(out)


def _rewrite_refresh(value: str, rewriter: UrlRewriter) -> str:
    """Rewrite the URL part of a meta refresh ``content`` ("5; url=/next")."""
    match = _REFRESH.match(value)
    if match is None:
        return value
    head, rest = match.groups()
    quote = rest[:1] if rest[:1] in ("'", '"') else ""
    body = rest[len(quote) :]
    close = body.find(quote) if quote else -1
    url = body if close < 0 else body[:close]
    core = url.rstrip(_WS)
    if not core:
        return value
    new = rewriter.rewrite(core, NAV)
    if new == core:
        return value
    return head + quote + new + body[len(core) :]


def iter_start_tags(html: str, xml: bool = False,
                    ) -> Iterator[tuple[re.Match[str], str, int, int]]:
    """Start tags that may carry URLs or styles, in document order, skipping comments and the
    text of raw-text elements: (tag match, lower-case name, raw text start, raw text end) —
    for a raw-text element (script, style, ...) the span of its text, else an empty span.

    With ``xml`` (a document the browser parses as XML: XHTML, SVG), a self-closed
    ``<script .../>`` is a whole element, not the start of raw text up to ``</script>``."""
    length = len(html)
    pos = 0
    skip = _SKIP.match
    while True:
        skipped = skip(html, pos)  # always matches, possibly empty
        start = length if skipped is None else skipped.end()
        if start >= length:
            return
        kind = html[start + 1] if start + 1 < length else ""
        if kind in ("!", "?"):
            if html.startswith("<!--", start):
                comment = _COMMENT.match(html, start)
                pos = length if comment is None else comment.end()
                continue
            close = html.find(">", start + 2)  # doctype, bogus comment, <?...>
            if close < 0:
                return
            pos = close + 1
            continue
        tag = _TAG.match(html, start)
        if tag is None:
            if _TAG_OPEN.match(html, start):
                return  # the tag runs to EOF: the rest is left unchanged
            if html.startswith("</>", start):
                pos = start + 3
                continue
            close = html.find(">", start + 2)  # "</" + non-letter: a bogus comment
            if close < 0:
                return
            pos = close + 1
            continue
        pos = tag.end()
        if tag.group(1):
            continue  # end tag
        name = tag.group(2).lower()
        raw_end = _RAW_TEXT_END.get(name)
        if raw_end is not None and not (xml and html[pos - 2] == "/"):
            end_tag = raw_end.search(html, pos)
            stop = length if end_tag is None else end_tag.start()
            yield tag, name, pos, stop
            pos = stop
        else:
            yield tag, name, pos, pos
            if name == "plaintext":
                return


class _HtmlPass:
    """One left-to-right pass over a document, collecting the unchanged spans and the edits."""

    __slots__ = ("base_seen", "depth", "doc_rewriter", "html", "last", "out", "rewriter", "xml")

    def __init__(self, html: str, rewriter: UrlRewriter, depth: int = 0,
                 xml: bool = False) -> None:
        self.html = html
        self.xml = xml
        self.doc_rewriter = rewriter
        self.rewriter = rewriter  # replaced once by the first <base href>
        self.base_seen = False
        self.depth = depth  # how many <iframe srcdoc> this document is inside
        self.out: list[str] = []
        self.last = 0  # html[last:] has not been copied to out yet

    def emit(self, start: int, end: int, text: str) -> None:
        """Replace html[start:end] with text."""
        self.out.append(self.html[self.last : start])
        self.out.append(text)
        self.last = end

    def run(self) -> str:
        """Rewrite the whole document."""
        html = self.html
        for tag, name, raw_start, raw_stop in iter_start_tags(html, self.xml):
            attrs_start, attrs_end = tag.span(3)
            if name == "a":
                plain = _PLAIN_A_HREF.fullmatch(html, attrs_start, attrs_end)
                if plain is not None:
                    start, end = plain.span(1)
                    value = plain.group(1)
                    new = self.rewriter.rewrite(value, NAV)
                    if new != value:
                        self.emit(start, end, _escape_attr(new, '"'))
                    continue
            modifiers = _ATTR_MODIFIERS.get(name)
            if attrs_end > attrs_start and (
                modifiers is not None or _STYLE_HINT.search(html, attrs_start, attrs_end)
            ):
                self.attributes(name, modifiers, attrs_start, attrs_end)
            if name == "style" and raw_stop > raw_start:
                css = html[raw_start:raw_stop]
                new = _rewrite_css(css, self.rewriter)
                if new != css:
                    self.emit(raw_start, raw_stop, new)
        if not self.out:
            return html
        self.out.append(html[self.last :])
        return "".join(self.out)

    def attributes(
        self, tag: str, modifiers: dict[str, str] | None, start: int, end: int
    ) -> None:
        """Rewrite the URL-bearing attributes of one start tag."""
        attrs = [(m.group(1).lower(), m) for m in _ATTR.finditer(self.html, start, end)]
        if tag == "link":
            rel = next((self.value_of(m) for n, m in attrs if n == "rel"), "")
            if not _LINK_RESOURCE_RELS.intersection(rel.lower().split()):
                modifiers = _LINK_PAGE_MODIFIERS
        gated = ""
        gate = _GATED_ATTRS.get(tag)
        if gate is not None:
            gated, key, wanted = gate
            for name, match in attrs:
                if name == key and self.value_of(match).strip(_WS).lower() == wanted:
                    gated = ""
                    break
        for name, match in attrs:
            if name == "style":
                self.rewrite_value(match, "style", EMBED)
            elif modifiers is not None and name in modifiers and name != gated:
                if tag == "base":
                    self.set_base(match)
                    kind = "base"
                elif name in _SRCSET_ATTRS:
                    kind = "srcset"
                elif name == "srcdoc":
                    kind = "srcdoc"
                else:
                    kind = "refresh" if tag == "meta" else "url"
                self.rewrite_value(match, kind, modifiers[name])
            elif tag == "link" and name == "integrity":
                self.drop(match)

    def value_of(self, match: re.Match[str]) -> str:
        """Decoded value of an attribute match ("" when it has none)."""
        group = match.lastindex or 0
        return _unescape_attr(match.group(group)) if group >= 2 else ""

    def rewrite_value(self, match: re.Match[str], kind: str, modifier: str) -> None:
        """Rewrite one attribute value in place, keeping its quoting."""
        group = match.lastindex or 0
        if group < 2:
            return
        start, end = match.span(group)
        raw = self.html[start:end]
        value = _unescape_attr(raw)
        if kind == "url":
            new = self.rewriter.rewrite(value, modifier)
        elif kind == "base":  # resolved against the document URL, not against itself
            new = self.doc_rewriter.rewrite_base(value, modifier)
        elif kind == "srcset":
            new = _rewrite_srcset(value, self.rewriter, modifier)
        elif kind == "style":
            new = _rewrite_css(value, self.rewriter)
        elif kind == "srcdoc":  # its relative URLs resolve against this document's base
            if self.depth >= MAX_SRCDOC_DEPTH:
                return
            new = _HtmlPass(value, self.rewriter, self.depth + 1).run()
        else:
            new = _rewrite_refresh(value, self.rewriter)
        if new != value:
            self.emit(start, end, _escape_attr(new, _QUOTE_OF_GROUP[group], self.xml))

    def set_base(self, match: re.Match[str]) -> None:
        """Adopt the first <base href> as the base for resolving the rest of the document."""
        if self.base_seen:
            return
        self.base_seen = True
        href = self.value_of(match).strip(_C0_SPACE)
        try:
            base = _resolve(self.doc_rewriter.base_url, href)
        except ValueError:
            return
        if _ABS_HTTP.match(base) is not None:
            self.rewriter = replace(self.doc_rewriter, base_url=base)

    def drop(self, match: re.Match[str]) -> None:
        """Remove an attribute, with its leading separator when another one still follows."""
        end = match.end()
        following = self.html[end : end + 1]
        self.emit(match.start() if following and following in _WS else match.start(1), end, "")


def _rewrite_html(html: str, rewriter: UrlRewriter, xml: bool = False) -> str:
    return _HtmlPass(html, rewriter, xml=xml).run()


def rewrite_html(html: str, rewriter: UrlRewriter, xml: bool = False) -> str:
    """Point every URL in an HTML document at the archive, leaving all other text as it was;
    ``xml`` for a document the browser parses as XML (application/xhtml+xml, SVG)."""
    try:
        return _rewrite_html(html, rewriter, xml)
    except Exception:  # a rewriter bug must not break replay: serve the page as archived
        _log.exception("HTML rewrite failed for %s", rewriter.base_url)
        return html


# --------------------------------------------------------------------------------------------
# CSS

_CSS_WS = "\t\n\f\r "
_CSS_DQ = r'"((?:[^"\\\n]|\\[\s\S])*+)"'
_CSS_SQ = r"'((?:[^'\\\n]|\\[\s\S])*+)'"
_CSS_BARE_STRING = r"\"(?:[^\"\\\n]|\\[\s\S])*+\"?|'(?:[^'\\\n]|\\[\s\S])*+'?"
_CSS_COMMENT = r"(/\*.*?(?:\*/|\Z))"
_CSS_URL = (
    rf"(?<![\w\\-])url\([{_CSS_WS}]*+(?:{_CSS_DQ}|{_CSS_SQ}|"
    rf"((?:[^{_CSS_WS}\"'()\\]|\\(?:[0-9a-fA-F]{{1,6}}+(?:\r\n|[{_CSS_WS}])?|[^\n\r\f]))*+))"
    rf"[{_CSS_WS}]*+\)"
)
_CSS_BAD_URL = r"((?<![\w\\-])url\([^)]*+\)?)"
# Groups: 1 comment, 2/3/4 url("..."), url('...'), url(...), 5 bad url (kept as is),
# 6/7 a string that is a URL, 8 image-set( (main) or "(" (inside image-set), 9 ")" (inside
# image-set) or an @namespace prelude (main: its url() is a name no browser loads).
_CSS_TOKEN = re.compile(
    rf"{_CSS_COMMENT}|{_CSS_URL}|{_CSS_BAD_URL}"
    rf"|@import[{_CSS_WS}]*+(?:{_CSS_DQ}|{_CSS_SQ})"
    rf"|((?<![\w\\-])(?:-webkit-)?image-set\()"
    rf"|{_CSS_BARE_STRING}"
    r"|(@namespace(?![\w-])[^;{}]*+)",
    re.I | re.S,
)
_CSS_IMAGE_SET_TOKEN = re.compile(
    rf"{_CSS_COMMENT}|{_CSS_URL}|{_CSS_BAD_URL}|{_CSS_DQ}|{_CSS_SQ}|(\()|(\))|{_CSS_BARE_STRING}",
    re.I | re.S,
)
_CSS_HINT = re.compile(r"url\(|@import|image-set\(", re.I)
_CSS_QUOTE_OF_GROUP = {2: '"', 3: "'", 4: "", 6: '"', 7: "'"}
_CSS_ESCAPE = re.compile(r"\\(?:([0-9a-fA-F]{1,6})(?:\r\n|[\t\n\f\r ])?|(\r\n|[\n\r\f])|(.))", re.S)
_CSS_UNSAFE = {
    '"': re.compile(r'[\\"\n\r\f]'),
    "'": re.compile(r"[\\'\n\r\f]"),
    "": re.compile(r"[\\\"'()\t\n\f\r \x00-\x08\x0b\x0e-\x1f\x7f]"),
}


def _css_unescape_one(match: re.Match[str]) -> str:
    digits = match.group(1)
    if digits is not None:
        code = int(digits, 16)
        return chr(code) if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"
    if match.group(2) is not None:
        return ""  # escaped newline: a line continuation inside a string
    return match.group(3)


def _css_escape_one(match: re.Match[str]) -> str:
    return f"\\{ord(match.group()):x} "


class _CssPass:
    """One pass over a style sheet, collecting the unchanged spans and the edits."""

    __slots__ = ("css", "last", "out", "rewriter")

    def __init__(self, css: str, rewriter: UrlRewriter) -> None:
        self.css = css
        self.rewriter = rewriter
        self.out: list[str] = []
        self.last = 0

    def url(self, match: re.Match[str], group: int) -> None:
        """Rewrite the URL held by one token group, re-escaping it for its quoting."""
        start, end = match.span(group)
        raw = self.css[start:end]
        value = _CSS_ESCAPE.sub(_css_unescape_one, raw) if "\\" in raw else raw
        new = self.rewriter.rewrite(value, EMBED)
        if new == value:
            return
        self.out.append(self.css[self.last : start])
        self.out.append(_CSS_UNSAFE[_CSS_QUOTE_OF_GROUP[group]].sub(_css_escape_one, new))
        self.last = end

    def run(self) -> str:
        """Rewrite the whole style sheet."""
        css = self.css
        pos = 0
        while (token := _CSS_TOKEN.search(css, pos)) is not None:
            pos = token.end()
            group = token.lastindex
            if group in (2, 3, 4, 6, 7):
                self.url(token, group)
            elif group == 8:
                pos = self.image_set(pos)
        if not self.out:
            return css
        self.out.append(css[self.last :])
        return "".join(self.out)

    def image_set(self, pos: int) -> int:
        """Rewrite an image-set() body, where bare strings are URLs; return the end position."""
        depth = 0
        while (token := _CSS_IMAGE_SET_TOKEN.search(self.css, pos)) is not None:
            pos = token.end()
            group = token.lastindex
            if group in (2, 3, 4) or (group in (6, 7) and depth == 0):
                self.url(token, group)
            elif group == 8:
                depth += 1
            elif group == 9:
                if depth == 0:
                    break
                depth -= 1
        return pos


def _rewrite_css(css: str, rewriter: UrlRewriter) -> str:
    if _CSS_HINT.search(css) is None:
        return css
    return _CssPass(css, rewriter).run()


def rewrite_css(css: str, rewriter: UrlRewriter) -> str:
    """Point every url() and @import in a style sheet at the archive, leaving all else as it was."""
    try:
        return _rewrite_css(css, rewriter)
    except Exception:  # a rewriter bug must not break replay: serve the sheet as archived
        _log.exception("CSS rewrite failed for %s", rewriter.base_url)
        return css


# --------------------------------------------------------------------------------------------
# Collecting instead of rewriting: what a page needs to render is exactly what replay serves bare.


# Bytes the URL parser percent-encodes in a query of an http(s) URL (the "special-query
# percent-encode set"); any other byte is kept as it is.
_QUERY_ENCODED = frozenset(b'"#<>\'') | frozenset(range(0x21)) | frozenset(range(0x7F, 0x100))
_UTF8_CODECS = frozenset({"utf-8", "utf-16", "utf-16-le", "utf-16-be"})
_TAB_OR_NEWLINE = dict.fromkeys(map(ord, "\t\n\r"))


def query_encoded(reference: str, codec: str) -> str:
    """``reference`` with its query percent-encoded in ``codec``, as a browser asks for it from
    a document in that encoding (the URL standard's query encoding; the path is always UTF-8).
    A character the encoding lacks is sent as ``&#N;``, percent-encoded, as browsers do; a C1
    control Python's table lacks (see ``c1_byte``) as its byte."""
    head, hash_, fragment = reference.partition("#")
    path, question, query = head.partition("?")
    if not question or query.isascii() or codec in _UTF8_CODECS:
        return reference
    query = query.translate(_TAB_OR_NEWLINE)  # the URL parser drops them before anything
    out: list[str] = []
    rest = query
    while rest:
        try:
            out.append(_percent_encoded(rest.encode(codec)))
            break
        except UnicodeEncodeError as exc:
            out.append(_percent_encoded(rest[: exc.start].encode(codec)))
            for char in rest[exc.start : exc.end]:
                byte = c1_byte(char, codec)
                out.append(_percent_encoded(byte) if byte else f"%26%23{ord(char)}%3B")
            rest = rest[exc.end :]
    return f"{path}?{''.join(out)}{hash_}{fragment}"


def _percent_encoded(data: bytes) -> str:
    return "".join(f"%{byte:02X}" if byte in _QUERY_ENCODED else chr(byte) for byte in data)


@dataclass(frozen=True, slots=True)
class EmbeddedCollector(UrlRewriter):
    """A rewriter that changes nothing and records, each once, the absolute URLs a document
    loads (embedded ones), up to ``limit``; past it the document is still scanned, but nothing
    in it is resolved or kept. With ``codec``, the document's encoding when it is not UTF-8,
    each URL's query is encoded in it, as the browser requests it."""

    limit: int | None = None
    codec: str = "utf-8"
    urls: dict[str, None] = field(default_factory=dict)
    # Values already resolved against this base (a <base href> makes a new collector).
    tried: set[str] = field(init=False, default_factory=set)

    def rewrite(self, url: str, modifier: str = "") -> str:
        """Record ``url`` resolved when it is an embedded http(s) URL; return it unchanged."""
        full = self.limit is not None and len(self.urls) >= self.limit
        if modifier != EMBED or url in self.tried or full:
            return url
        self.tried.add(url)
        wanted = query_encoded(url.strip(_C0_SPACE), self.codec)
        rewritten = UrlRewriter.rewrite(self, wanted, modifier)
        if rewritten != wanted:
            cut = len(self.prefix) + len(self.timestamp) + len(modifier) + 1
            self.urls.setdefault(rewritten[cut:].split("#", 1)[0], None)
        return url

    def rewrite_base(self, url: str, modifier: str) -> str:
        """A ``<base href>`` is not a requisite: leave it out."""
        return url


def embedded_urls_html(html: str, base_url: str, limit: int | None = None,
                       codec: str = "utf-8", xml: bool = False) -> list[str]:
    """Absolute URLs of everything an HTML document loads to render (images, styles, ...),
    the first ``limit`` of them when given, as a browser reading the document as ``codec``
    requests them; ``xml`` as for :func:`rewrite_html`."""
    collector = EmbeddedCollector(base_url=base_url, timestamp="0", limit=limit, codec=codec)
    rewrite_html(html, collector, xml)
    return list(collector.urls)


def embedded_urls_css(css: str, base_url: str, limit: int | None = None) -> list[str]:
    """Absolute URLs a style sheet loads (url() and @import), the first ``limit`` of them
    when given."""
    collector = EmbeddedCollector(base_url=base_url, timestamp="0", limit=limit)
    rewrite_css(css, collector)
    return list(collector.urls)
