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

from archiver.bounded import RecentDict
from archiver.net.client import Exchange, FetchError, HttpClient
from archiver.net.content import ContentError, decode_text, undo_content_encoding

ROBOTS_BYTES = 512 * 1024  # RFC 9309: parse at least 500 KiB
ROBOTS_TTL = 24 * 3600
UNREACHABLE_TTL = 600  # an unreachable robots.txt is asked again this soon (it is a passing state)
MAX_ORIGINS = 10_000  # rules kept in memory (a large robots.txt is a few hundred KB parsed)
ROBOTS_AGENT = "link-archiver"
DISALLOW_ALL = ["User-agent: *", "Disallow: /"]
_META_ROBOTS = re.compile(
    r"""<meta\b[^>]*?\bname\s*=\s*["']?(?:robots|link-archiver)["']?[^>]*>""", re.I)
_CONTENT = re.compile(r"""\bcontent\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.I)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class RobotsPolicy:
    """robots.txt rules per origin, fetched through the HTTP module and kept for a day (an
    unreachable one for ``UNREACHABLE_TTL``)."""

    def __init__(self, client: HttpClient, ttl: float = ROBOTS_TTL,
                 max_origins: int = MAX_ORIGINS) -> None:
        self.client = client
        self.ttl = ttl
        self._lock = threading.Lock()
        # origin: (when read, its rules, why it could not be read or None, how long it holds);
        # the origins read last only, as a scheduler keeps this for its whole life
        self._rules: RecentDict[str, tuple[float, RobotFileParser, str | None, float]] = \
            RecentDict(max_origins)

    def _load(self, origin: str,
              stop: threading.Event | None = None) -> tuple[RobotFileParser, str | None]:
        """The origin's rules, and why its robots.txt could not be read (None when it was)."""
        parser = RobotFileParser()
        try:
            final = self.client.fetch(origin + "/robots.txt", max_body_bytes=ROBOTS_BYTES,
                                      stop=stop).final
        except FetchError as exc:
            parser.parse(DISALLOW_ALL)  # unreachable: assume complete disallow (RFC 9309 2.3.1.4)
            return parser, f"{exc.verdict}: {exc.message}"
        if final.truncated in {"disconnect", "time"}:  # rules cut short may allow too much
            parser.parse(DISALLOW_ALL)
            return parser, f"robots.txt cut short ({final.truncated})"
        if 400 <= final.status < 500:
            parser.parse([])  # no robots.txt: everything is allowed
        elif not 200 <= final.status < 300:
            parser.parse(DISALLOW_ALL)  # a server error is unreachable too (RFC 9309 2.3.1.4)
            return parser, f"HTTP {final.status}"
        else:
            try:
                body = undo_content_encoding(final.body, final.header("Content-Encoding") or "",
                                             ROBOTS_BYTES * 4)
            except ContentError:
                body = b""
            parser.parse(decode_text(body, "utf-8").splitlines())
        return parser, None

    def _entry(self, url: str, stop: threading.Event | None = None,
               ) -> tuple[float, RobotFileParser, str | None, float]:
        origin = _origin(url)
        with self._lock:
            cached = self._rules.get(origin)
        if cached is None or time.monotonic() - cached[0] > cached[3]:
            parser, problem = self._load(origin, stop)
            holds = self.ttl if problem is None else min(self.ttl, UNREACHABLE_TTL)
            cached = (time.monotonic(), parser, problem, holds)
            with self._lock:
                self._rules[origin] = cached
        return cached

    def allowed(self, url: str, stop: threading.Event | None = None) -> bool:
        """True when the site's robots.txt lets our agent fetch ``url``; ``stop`` as for
        :meth:`HttpClient.fetch` (:class:`Stopped` when it ends the wait to read it)."""
        return self._entry(url, stop)[1].can_fetch(ROBOTS_AGENT, url)

    def unreachable(self, url: str) -> str | None:
        """Why the site's robots.txt could not be read (nothing is allowed meanwhile: a
        passing state, not the site's wish), or None when it was read."""
        return self._entry(url)[2]


# Why a robots.txt could not be read, as RobotsPolicy.unreachable says it ("HTTP <status>",
# "<verdict>: <message>", or a cut short one), when the cause passes: a server error, a
# timeout, a reset. A refused connection, an unknown name or an address the guard refuses
# does not come back in hours.
_PASSING_PROBLEMS = ("HTTP 5", "timeout:", "connection_error:", "server_error:",
                     "rate_limited:", "robots.txt cut short")


def passing_problem(problem: str) -> bool:
    """Whether a robots.txt unreadable for ``problem`` (RobotsPolicy.unreachable) may be
    readable again in hours."""
    return problem.startswith(_PASSING_PROBLEMS)


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
