"""robots.txt (RFC 9309) and "noarchive" for captures: what the site allows us to keep.

Checks are not captures: a link's health is checked whatever robots.txt says, as a browser
following the link would.  Captures honour robots.txt, ``X-Robots-Tag: noarchive`` and
``<meta name="robots" content="noarchive">`` unless ``capture.respect_robots`` is off.
"""

from __future__ import annotations

import re
import threading
import time
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

from archiver.net.client import Exchange, FetchError, HttpClient
from archiver.net.content import ContentError, decode_text, undo_content_encoding

ROBOTS_BYTES = 512 * 1024  # RFC 9309: parse at least 500 KiB
ROBOTS_TTL = 24 * 3600
ROBOTS_AGENT = "link-archiver"
DISALLOW_ALL = ["User-agent: *", "Disallow: /"]
_META_ROBOTS = re.compile(
    r"""<meta\b[^>]*?\bname\s*=\s*["']?(?:robots|link-archiver)["']?[^>]*>""", re.I)
_CONTENT = re.compile(r"""\bcontent\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.I)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class RobotsPolicy:
    """robots.txt rules per origin, fetched through the HTTP module and kept for a day."""

    def __init__(self, client: HttpClient, ttl: float = ROBOTS_TTL) -> None:
        self.client = client
        self.ttl = ttl
        self._lock = threading.Lock()
        self._rules: dict[str, tuple[float, RobotFileParser]] = {}

    def _load(self, origin: str) -> RobotFileParser:
        parser = RobotFileParser()
        try:
            final = self.client.fetch(origin + "/robots.txt", max_body_bytes=ROBOTS_BYTES).final
        except FetchError:
            parser.parse(DISALLOW_ALL)  # unreachable: assume complete disallow (RFC 9309 2.3.1.4)
            return parser
        if 400 <= final.status < 500:
            parser.parse([])  # no robots.txt: everything is allowed
        elif not 200 <= final.status < 300:
            parser.parse(DISALLOW_ALL)
        else:
            try:
                body = undo_content_encoding(final.body, final.header("Content-Encoding") or "",
                                             ROBOTS_BYTES * 4)
            except ContentError:
                body = b""
            parser.parse(decode_text(body, "utf-8").splitlines())
        return parser

    def allowed(self, url: str) -> bool:
        """True when the site's robots.txt lets our agent fetch ``url``."""
        origin = _origin(url)
        with self._lock:
            cached = self._rules.get(origin)
        if cached is None or time.monotonic() - cached[0] > self.ttl:
            cached = (time.monotonic(), self._load(origin))
            with self._lock:
                self._rules[origin] = cached
        return cached[1].can_fetch(ROBOTS_AGENT, url)


def forbids_archiving(exchange: Exchange, html_head: str = "") -> bool:
    """True when the response says "noarchive" (X-Robots-Tag header or robots meta tag)."""
    for name, value in exchange.headers:
        if name.lower() == "x-robots-tag":
            rules = value.split(":", 1)[-1] if ":" in value.split(",")[0] else value
            if _says_noarchive(rules):
                return True
    for tag in _META_ROBOTS.findall(html_head):
        content = _CONTENT.search(tag)
        if content and _says_noarchive(next(g for g in content.groups() if g is not None)):
            return True
    return False


def _says_noarchive(rules: str) -> bool:
    tokens = {token.strip().lower() for token in rules.split(",")}
    return bool(tokens & {"noarchive", "none"})
