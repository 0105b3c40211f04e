"""Cookies the sites set, sent back to them as a browser would, kept per site and for a while.

A redirect that sets a cookie and expects it on the next hop (consent and bot walls), or a page
whose images need its session cookie, works.  One ``http.cookiejar.CookieJar`` for every site
does not scale: it walks all its cookies for every request, which cost 9 ms of CPU per request
once 1,000 sites had set one, and 75 ms at 10,000, and it grew for as long as the process ran.
Cookies are kept here per site group (the host's last two labels, which every domain a cookie
may be set for shares), so a request reads only its own group's jar; a group's cookies are
forgotten ``lifetime`` seconds after its last request, and at most ``max_sites`` are kept.
A group can hold unrelated sites (the blogs of one host, ``*.substack.com``; names under a
two-label suffix, ``*.co.uk``): past ``MAX_PER_SITE`` cookies, the domain that set the most
loses its cookies first, so one site's many never cost another its one.  Each jar is used
under its own lock: ``CookieJar`` counts and empties itself without taking its lock.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.cookiejar import CookieJar
from typing import Any

from urllib3.util import parse_url

from archiver.bounded import RecentDict

COOKIE_LIFETIME = 3600.0  # a run's redirects and a page's requisites come well within it
MAX_SITES = 5000
MAX_PER_SITE = 200  # more than a browser keeps for one domain (about 180)


def site_group(host: str) -> str:
    """The jar a host's cookies live in: an IP address as it is, a name's last two labels."""
    name = host.strip("[]").rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(name.split("%", 1)[0]))
    except ValueError:
        return ".".join(name.rsplit(".", 2)[-2:])


class SiteCookies:
    """Thread-safe cookie memory of one HTTP client."""

    def __init__(self, lifetime: float = COOKIE_LIFETIME, max_sites: int = MAX_SITES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime = lifetime
        self._clock = clock
        self._lock = threading.Lock()
        self._jars: RecentDict[str, tuple[float, _Jar]] = RecentDict(max_sites)

    def __len__(self) -> int:
        """How many sites' cookies are held."""
        return len(self._jars)

    def _jar(self, url: str, *, create: bool) -> _Jar | None:
        group = site_group(parse_url(url).host or "")
        now = self._clock()
        with self._lock:
            while self._jars:  # the least recently used first: stop at one still fresh
                oldest, (used, _jar) = next(iter(self._jars.items()))
                if now - used <= self.lifetime:
                    break
                del self._jars[oldest]
            entry = self._jars.get(group)
            if entry is None and not create:
                return None
            jar = entry[1] if entry is not None else _Jar()
            self._jars[group] = (now, jar)
            return jar

    def add_to(self, url: str, headers: dict[str, str]) -> dict[str, str]:
        """``headers`` plus the Cookie header held for ``url`` (the same dict when none)."""
        if not self._jars:
            return headers
        jar = self._jar(url, create=False)
        if jar is None:
            return headers
        request = _cookie_request(url, headers)
        with jar.lock:
            jar.cookies.add_cookie_header(request)
        cookie = request.unredirected_hdrs.get("Cookie")
        return {**headers, "Cookie": cookie} if cookie else headers

    def keep(self, url: str, headers: list[tuple[str, str]]) -> None:
        """Store the cookies a response to ``url`` sets."""
        jar = self._jar(url, create=True)
        assert jar is not None
        with jar.lock:
            jar.cookies.extract_cookies(_CookieResponse(headers),  # type: ignore[arg-type]
                                        _cookie_request(url, {}))
            if len(jar.cookies) > MAX_PER_SITE:
                _trim(jar.cookies)


class _Jar:
    """One site group's cookies, and the lock every use of them takes."""

    def __init__(self) -> None:
        self.cookies = CookieJar()
        self.lock = threading.Lock()


def _trim(jar: CookieJar) -> None:
    """Bring ``jar`` back to ``MAX_PER_SITE`` cookies: the expired ones first, then those of
    the domain holding the most, until it fits (its lock held by the caller)."""
    jar.clear_expired_cookies()
    while len(jar) > MAX_PER_SITE:
        heaviest = Counter(cookie.domain for cookie in jar).most_common(1)[0][0]
        jar.clear(heaviest)


def _cookie_request(url: str, headers: dict[str, str]) -> Any:
    """The urllib Request that http.cookiejar wants, for the URL as it goes on the wire."""
    from urllib.request import Request  # only when a site sets cookies

    return Request(parse_url(url).url, headers=headers)  # noqa: S310 (never opened)


class _CookieResponse:
    """The slice of a urllib response that http.cookiejar reads: the Set-Cookie headers."""

    def __init__(self, headers: list[tuple[str, str]]) -> None:
        self.headers = headers

    def info(self) -> _CookieResponse:
        return self

    def get_all(self, name: str, default: Any = None) -> Any:
        lowered = name.lower()
        return [value for key, value in self.headers if key.lower() == lowered] or default
