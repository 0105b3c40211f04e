"""Outbound references of a post: links and embeds, with the words around them.

One parse per post, one CSS query for every kind of reference, and each block's text walked
once however many links it holds, so a large import stays cheap.  Nothing here raises on bad
input: a reference that is not a usable URL comes back with ``url=None`` and a verdict.

Addresses written as plain text are references too (element ``text``): a Markdown site
(GitHub, Hugo) or WordPress shows a bare ``https://`` or ``www.`` address as a link, and
a reader of any post can follow one.  Text inside code (``pre``, ``code``, ...) is an example,
not a citation, and is left out, as lychee does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import urlsplit

from linkify_it import LinkifyIt
from selectolax.lexbor import LexborHTMLParser, LexborNode

from archiver.urls import (
    FETCHABLE_SCHEMES,
    SKIPPED_SCHEMES,
    InvalidURL,
    canonicalize,
    resolve,
    scheme_of,
    site_of,
    site_or_empty,
)

CONTEXT_CHARS = 300
_WINDOW = 2 * CONTEXT_CHARS  # raw characters looked at on each side of a link

# Element -> attribute holding the reference.  ``source`` only counts inside video/audio
# (inside <picture> it carries a srcset, which is a page requisite, not a reference).
_SELECTOR = ", ".join((
    "a[href]", "iframe[src]", "video[src]", "audio[src]", "video source[src]",
    "audio source[src]", "embed[src]", "object[data]", "base[href]",
    "iframe[data-src]", "iframe[data-lazy-src]", "video[data-src]", "audio[data-src]",
))
# Where lazy-load plugins keep an embed's address while ``src`` is empty or a placeholder.
_LAZY_ATTRIBUTES = ("data-src", "data-lazy-src")
_PLACEHOLDER_SCHEMES = frozenset({"about", "data", "javascript", "blob"})
_ATTRIBUTE = {"a": "href", "iframe": "src", "video": "src", "audio": "src", "source": "src",
              "embed": "src", "object": "data"}

# Blocks whose text is a link's context; the nearest one around the link is used.
_BLOCKS = frozenset({
    "p", "li", "td", "th", "dd", "dt", "blockquote", "figcaption", "caption", "pre",
    "h1", "h2", "h3", "h4", "h5", "h6", "div", "section", "article", "aside", "main",
    "header", "footer", "figure", "details", "summary", "nav", "address", "body",
})
# Elements that separate words even when no whitespace surrounds them in the source.
_BREAKS = _BLOCKS | {"br", "hr", "ul", "ol", "dl", "table", "tr", "img", "iframe", "video",
                     "audio", "embed", "object"}
_SILENT = frozenset({"script", "style", "template", "noscript"})

# Besides SKIPPED_SCHEMES: scripts and the app links of share bars and contact buttons, which
# are on every post and are no reference (ftp: and the like still are, just not fetchable).
_IGNORED_SCHEMES = SKIPPED_SCHEMES | frozenset({
    "vbscript", "livescript", "view-source", "intent", "sip", "sips", "skype", "whatsapp",
    "viber", "fb-messenger", "tg", "line", "wechat", "weixin", "slack", "zoommtg", "facetime",
    "facetime-audio", "fax", "xmpp",
})
# Where an address in the text is no citation: inside a link already, or in code.
_NOT_CITED = frozenset({"a", "pre", "code", "kbd", "samp", "var", "tt", "textarea", "title"})
# Bare addresses as GitHub's Markdown finds them: any scheme, or a host starting "www."
# (a bare "example.com" or "ASP.NET" is too often not meant as a link).
_LINKIFY = LinkifyIt(options={"fuzzy_link": True, "fuzzy_email": False, "fuzzy_ip": False})
# Only these can start an address we keep (mailto: and the like are not references).
_MAYBE_ADDRESS = re.compile(r"://|www\.", re.IGNORECASE)
_LONGEST_ADDRESS = 4096  # characters of a word read on each side of "://" or "www."
_WORD_AFTER = re.compile(rf"\S{{0,{_LONGEST_ADDRESS}}}")
_TEXT_ELEMENT = "text"
_TRAILING = "?!.,:;*_~'\"\u201d\u2019\u2026\u00bb\u203a"  # ASCII and typographic closers
# Raised when the rules change what is extracted from the same HTML: a post is read again
# (its citations replaced) the next time its source is read, even when it did not change.
# 3: hash-bang and route fragments (#!/…, #/…) are part of a link (archiver.urls); the
# blog's own site is spelled as links are (IDNA) and, at a path, owns only what is under it.
EXTRACTION_RULES = 3
_SPACE_RE = re.compile(r"\s+")
# A path's last segment that names a page file rather than a folder (index.html, blog.php).
_PAGE_FILE_RE = re.compile(r"\.(?:s?html?|xhtml|php\d?|aspx?|jsp|cgi|pl)$", re.IGNORECASE)
_SENTENCE_END_RE = re.compile(r"[.!?\u2026](?=[\s\"'\u201d\u2019)\]]*\s)")
_START, _END = "\ue000", "\ue001"  # private-use marks around the link while collapsing


@dataclass(frozen=True)
class ExtractedLink:
    """One outbound reference of a post, as written and as canonical URL."""

    href: str
    url: str | None
    verdict: str | None
    element: str
    anchor_text: str | None
    context: str | None


@dataclass
class _BlockText:
    """A block's raw text, where each link's text starts and ends in it, and where each text
    node starts."""

    text: str
    spans: dict[int, tuple[int, int]]
    text_starts: dict[int, int]


def extract_links(html: str, page_url: str, site_url: str | None = None) -> list[ExtractedLink]:
    """Outbound references of a post in document order, deduplicated by (url or href, element);
    an address in the text is left out when an element already cites it."""
    tree = _parse(html)
    if tree is None:
        return []
    nodes = tree.css(_SELECTOR)
    base = page_url
    for node in nodes:
        if node.tag == "base":
            base = _base_url(node.attributes.get("href") or "", page_url)
            break
    # A post's own address says its host, never where the blog starts on it.
    own_site = _own_site(site_url) if site_url else _own_site(page_url)._replace(path="")
    blocks: dict[int, _BlockText] = {}
    seen: set[tuple[str, str]] = set()
    positions, bare = _walk_document(tree)
    links: list[tuple[int, ExtractedLink]] = []
    for node in nodes:
        element = node.tag or ""
        attribute = _ATTRIBUTE.get(element)
        if attribute is None:
            continue
        href = _reference(node, attribute)
        target = _target(href, base, own_site)
        if target is None:
            continue
        url, verdict = target
        key = (url or href, element)
        if key in seen:
            continue
        seen.add(key)
        links.append((positions.get(node.mem_id, 0), ExtractedLink(
            href=href, url=url, verdict=verdict, element=element,
            anchor_text=_anchor_text(node), context=_context(node, blocks),
        )))
    cited = {url for url, _element in seen}
    for position, node, href, within in bare:
        target = _target(href, base, own_site)
        if target is None or (target[0] or href) in cited:
            continue
        url, verdict = target
        cited.add(url or href)
        links.append((position, ExtractedLink(
            href=href, url=url, verdict=verdict, element=_TEXT_ELEMENT, anchor_text=None,
            context=_context(node, blocks, within=within))))
    links.sort(key=lambda pair: pair[0])
    return [link for _position, link in links]


_Bare = tuple[int, LexborNode, str, tuple[int, int]]


def _walk_document(tree: LexborHTMLParser) -> tuple[dict[int, int], list[_Bare]]:
    """Every element's position in document order, and the addresses written as plain text:
    (position, text node, address, where it is in the node's text)."""
    positions: dict[int, int] = {}
    bare: list[_Bare] = []
    root = tree.root
    if root is None:
        return positions, bare
    for position, node in enumerate(root.traverse(include_text=True)):
        if not node.is_text_node:
            positions[node.mem_id] = position
            continue
        text = node.text_content or ""
        if _MAYBE_ADDRESS.search(text) is None or not _cited_here(node):
            continue  # spare the matcher most of a post's text
        for address, where in _addresses_in(text):
            bare.append((position, node, address, where))
    return positions, bare


def _addresses_in(text: str) -> list[tuple[str, tuple[int, int]]]:
    """The addresses in a text and where each is.  An address has no white space in it, so
    the matcher reads only the words around each "://" or "www." (at most
    ``_LONGEST_ADDRESS`` characters each side), not the whole text: a 5 MB text node with one
    address took it 8 seconds."""
    found: list[tuple[str, tuple[int, int]]] = []
    done = 0  # the end of the last word read
    for hint in _MAYBE_ADDRESS.finditer(text):
        if hint.start() < done:
            continue
        lo = max(done, hint.start() - _LONGEST_ADDRESS)
        space = _SPACE_RE.search(text[lo:hint.start()][::-1])  # the last one before the hint
        begin = hint.start() - space.start() if space else lo
        right = _WORD_AFTER.match(text, hint.start())
        done = right.end() if right else hint.end()
        for match in _LINKIFY.match(text[begin:done]) or ():
            if match.schema not in ("", "//") or match.raw.lower().startswith("www."):
                # Trailing punctuation ends the sentence, not the address (as in GitHub's
                # Markdown), also before a closing bracket: "(see https://x.org/a!)".
                url = match.url.rstrip(_TRAILING)
                end = match.last_index - (len(match.url) - len(url))
                found.append((url, (begin + match.index, begin + end)))
    return found


def _cited_here(node: LexborNode) -> bool:
    """Whether an address in this text node is a citation (not in a link, code or script)."""
    current = node.parent
    while current is not None and not current.is_document_node:
        if current.tag in _NOT_CITED or current.tag in _SILENT:
            return False
        current = current.parent
    return True


def _reference(node: LexborNode, attribute: str) -> str:
    """The address an element refers to; for an embed, a lazy-load attribute's when ``src`` is
    empty or a placeholder."""
    attributes = node.attributes
    href = (attributes.get(attribute) or "").strip()
    if attribute != "src" or (href and scheme_of(href) not in _PLACEHOLDER_SCHEMES):
        return href
    for name in _LAZY_ATTRIBUTES:
        lazy = (attributes.get(name) or "").strip()
        if lazy:
            return lazy
    return href


def _parse(html: str) -> LexborHTMLParser | None:
    try:
        return LexborHTMLParser(html)
    except UnicodeEncodeError:
        # Lone surrogates cannot go to the UTF-8 parser; replace them and parse again.
        return LexborHTMLParser(html.encode("utf-8", "replace").decode("utf-8"))
    except (TypeError, ValueError):
        return None


def _base_url(href: str, page_url: str) -> str:
    href = href.strip()
    if not href:
        return page_url
    try:
        base = resolve(href, page_url)
    except ValueError:
        return page_url
    return base if scheme_of(base) in FETCHABLE_SCHEMES else page_url


class _OwnSite(NamedTuple):
    """The blog's own address: its site (host without ``www.``, plus any port) and, for a
    blog at a path of a shared host (``/~alice``), that path without its final slash."""

    site: str
    path: str

    def holds(self, url: str) -> bool:
        """Whether ``url`` is one of the blog's own pages."""
        if not self.site or site_of(url) != self.site:
            return False
        if not self.path:
            return True
        path = urlsplit(url).path
        return path == self.path or path.startswith(self.path + "/")


def _own_site(address: str) -> _OwnSite:
    """The blog's own site from its address, spelled as links are (IDNA, percent-encoding):
    the author types https://bücher.example/, links resolve to xn--bcher-kva.example."""
    try:
        canonical = canonicalize(address)
    except InvalidURL:  # a post read from a file: file:///..., no site of its own
        return _OwnSite(site_or_empty(address), "")
    return _OwnSite(site_of(canonical), _folder_of(urlsplit(canonical).path))


def _folder_of(path: str) -> str:
    """The folder a blog's address names, without its final slash: ``/~alice/index.html``,
    the address a browser shows for a shared host's user folder, is ``/~alice``."""
    head, _slash, last = path.rpartition("/")
    return head if _PAGE_FILE_RE.search(last) else path.rstrip("/")


def _target(href: str, base: str, own_site: _OwnSite) -> tuple[str | None, str | None] | None:
    """(canonical URL, verdict) of a reference, or None when it is not an outbound one."""
    if not href or href.startswith("#"):
        return None
    if scheme_of(href) in _IGNORED_SCHEMES:
        return None
    if href.startswith("//") and scheme_of(base) not in FETCHABLE_SCHEMES:
        base = "https://localhost/"  # a protocol-relative link in a local file means the web
    try:
        absolute = resolve(href, base)
        # Same-site links are most of a blog's links: drop them before the costly normalising.
        if own_site.holds(absolute):
            return None
    except ValueError:
        return None, "invalid_url"
    if scheme_of(absolute) in _IGNORED_SCHEMES:
        return None  # e.g. a relative link inside a post read from a local file
    return _canonical(absolute, own_site)


@lru_cache(maxsize=65536)
def _canonical(absolute: str, own_site: _OwnSite) -> tuple[str | None, str | None] | None:
    try:
        url = canonicalize(absolute)
    except InvalidURL as exc:
        return None, exc.verdict
    if own_site.holds(url):
        return None
    return url, None


def _collapse(text: str) -> str:
    return _SPACE_RE.sub(" ", text).strip()


def _anchor_text(node: LexborNode) -> str | None:
    attributes = node.attributes
    if node.tag == "a":
        text = _collapse(node.text(deep=True))
        if not text:
            image = node.css_first("img[alt]")
            text = _collapse(image.attributes.get("alt") or "") if image is not None else ""
        if not text:
            text = _collapse(attributes.get("title") or "")
        return text or None
    for name in ("title", "alt", "aria-label"):
        text = _collapse(attributes.get(name) or "")
        if text:
            return text
    if node.tag == "source" and node.parent is not None:
        text = _collapse(node.parent.attributes.get("title") or "")
        return text or None
    return None


def _block_of(node: LexborNode) -> LexborNode | None:
    current = node.parent
    while current is not None:
        if current.tag in _BLOCKS:
            return current
        if current.tag in ("html", "-document") or current.is_document_node:
            break
        current = current.parent
    return node.parent


def _walk_block(block: LexborNode) -> _BlockText:
    """The block's text, in one walk, with the span of every reference inside it."""
    pieces: list[str] = []
    length = 0
    spans: dict[int, tuple[int, int]] = {}
    text_starts: dict[int, int] = {}
    opened: dict[int, int] = {}
    # A reference's text ends where the walk reaches the first node after its subtree.
    closes_at: dict[int, list[int]] = {}
    for child in block.traverse(include_text=True):
        for link_id in closes_at.pop(child.mem_id, ()):
            spans[link_id] = (opened.pop(link_id), length)
        if child.is_text_node:
            parent = child.parent
            if parent is not None and parent.tag in _SILENT:
                continue
            text = child.text_content or ""
            text_starts[child.mem_id] = length
            pieces.append(text)
            length += len(text)
        elif child.is_element_node:
            tag = child.tag or ""
            if tag in _ATTRIBUTE:
                opened[child.mem_id] = length
                following = _following(child, block)
                if following is not None:
                    closes_at.setdefault(following.mem_id, []).append(child.mem_id)
            if tag in _BREAKS and child.mem_id != block.mem_id:
                pieces.append(" ")
                length += 1
    for link_id, start in opened.items():
        spans[link_id] = (start, length)
    return _BlockText("".join(pieces), spans, text_starts)


def _following(node: LexborNode, block: LexborNode) -> LexborNode | None:
    """The first node after ``node``'s subtree inside ``block``, in document order."""
    current: LexborNode | None = node
    while current is not None and current.mem_id != block.mem_id:
        sibling = current.next
        if sibling is not None:
            return sibling
        current = current.parent
    return None


def _context(node: LexborNode, blocks: dict[int, _BlockText],
             within: tuple[int, int] | None = None) -> str | None:
    """The sentence around a reference: an element's text, or ``within`` a text node."""
    block = _block_of(node)
    if block is None:
        return None
    walked = blocks.get(block.mem_id)
    if walked is None:
        walked = _walk_block(block)
        blocks[block.mem_id] = walked
    if within is None:
        span = walked.spans.get(node.mem_id)
    else:
        node_start = walked.text_starts.get(node.mem_id)
        span = None if node_start is None else (node_start + within[0], node_start + within[1])
    if span is None:
        return None
    start, end = span
    text = walked.text
    left = text[max(0, start - _WINDOW):start]
    middle = text[start:end]
    right = text[end:end + _WINDOW]
    marked = _SPACE_RE.sub(" ", f"{left}{_START}{middle}{_END}{right}")
    begin, finish = marked.index(_START), marked.index(_END)
    # The sentence starts after the last sentence end before the link, ends at the first after.
    ends_before = [match.end() for match in _SENTENCE_END_RE.finditer(marked, 0, begin)]
    sentence_start = ends_before[-1] if ends_before else 0
    after = _SENTENCE_END_RE.search(marked, finish)
    sentence_end = after.end() if after else len(marked)
    sentence = marked[sentence_start:sentence_end]
    if len(sentence) > CONTEXT_CHARS:
        sentence = _clip(sentence, begin - sentence_start, finish - sentence_start)
    return _collapse(sentence.replace(_START, "").replace(_END, "")) or None


def _clip(sentence: str, begin: int, finish: int) -> str:
    """Cut a long sentence to CONTEXT_CHARS around the link, marking the cuts with '…'."""
    spare = max(0, CONTEXT_CHARS - (finish - begin))
    lo = max(0, begin - spare // 2)
    hi = min(len(sentence), lo + CONTEXT_CHARS)
    lo = max(0, hi - CONTEXT_CHARS)
    clipped = sentence[lo:hi]
    if lo > 0:
        clipped = "\u2026" + clipped.lstrip()
    if hi < len(sentence):
        clipped = clipped.rstrip() + "\u2026"
    return clipped
