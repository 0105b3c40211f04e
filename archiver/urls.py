"""URL canonicalisation, done once and here only.

``canonicalize`` gives a link its identity (RFC 3986 normalisation via ``url-normalize``:
scheme and host case, IDNA, default ports, dot segments, percent-encoding).  The fragment is
dropped, as it never reaches the server, unless it is an address of its own: a hash-bang
(``#!/user/status/1``, Twitter and Google Groups a decade ago) or a route (``#/page``, single
page apps) names a different document each time, though all of them fetch the same page.
Such a fragment is part of the link, never of what is fetched or looked up: ``url_key`` and
the HTTP client leave it out.  ``url_key`` gives the SURT key that the
capture index sorts and looks up by, the same key pywb and the Wayback Machine use.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

from ada_url import join_url
from url_normalize import url_normalize

MAX_URL_LENGTH = 8192
_HOST_RE = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?")
_IPV6_RE = re.compile(r"[0-9a-f:.]+")
FETCHABLE_SCHEMES = frozenset({"http", "https"})
_ADDRESS_FRAGMENTS = ("!", "/")  # #!/... and #/...: a document's address, not an anchor
# What a browser leaves as it is in a fragment (all but the WHATWG fragment percent-encode
# set: controls, space, '"', "<", ">", "`" and non-ASCII), "%" included so no escape doubles.
_FRAGMENT_SAFE = "!#$%&'()*+,/:;=?@[\\]^{|}"
_PERCENT_RE = re.compile(r"%[0-9a-fA-F]{2}")
SKIPPED_SCHEMES = frozenset({"mailto", "javascript", "tel", "data", "sms", "about", "blob",
                             "file", "callto", "geo", "urn", "news", "irc"})


class InvalidURL(ValueError):
    """The text is not a URL we can fetch; ``verdict`` says which kind of failure."""

    def __init__(self, message: str, verdict: str = "invalid_url") -> None:
        super().__init__(message)
        self.verdict = verdict


def canonicalize(url: str) -> str:
    """Normalise an absolute http(s) URL into the form that identifies a link.

    Raises :class:`InvalidURL` for anything that is not a fetchable absolute URL.
    """
    text = url.strip()
    if not text:
        raise InvalidURL("empty URL")
    if len(text) > MAX_URL_LENGTH:
        raise InvalidURL(f"URL longer than {MAX_URL_LENGTH} characters")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise InvalidURL("URL contains control characters")
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise InvalidURL(f"unparsable URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if not scheme:
        raise InvalidURL("URL is not absolute")
    if scheme not in FETCHABLE_SCHEMES:
        raise InvalidURL(f"scheme {scheme!r} is not fetched", verdict="unsupported_scheme")
    try:
        hostname = parts.hostname
        _ = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        raise InvalidURL(f"bad host or port: {exc}") from exc
    if not hostname:
        raise InvalidURL("URL has no host")
    resource, _mark, fragment = text.partition("#")
    try:
        normalised = url_normalize(resource)
    except Exception as exc:
        raise InvalidURL(f"cannot normalise URL: {exc}") from exc
    if not normalised:
        raise InvalidURL("cannot normalise URL")
    _check_authority(str(normalised))
    return str(normalised) + _kept_fragment(fragment)


def _kept_fragment(fragment: str) -> str:
    """``#`` and the fragment when it is an address (hash-bang or route), percent-encoded as
    a browser sends it on; '' for an ordinary in-page anchor."""
    if not fragment.startswith(_ADDRESS_FRAGMENTS):
        return ""
    # Not through url_normalize: it rewrites "#!" into Google's retired ?_escaped_fragment_=.
    try:
        encoded = quote(fragment, safe=_FRAGMENT_SAFE)
    except UnicodeEncodeError as exc:  # a lone surrogate: no browser could send it either
        raise InvalidURL("unencodable fragment") from exc
    return "#" + _PERCENT_RE.sub(lambda match: match.group(0).upper(), encoded)


def _check_authority(url: str) -> None:
    """Refuse host names and ports that no request could reach (the normaliser lets them by)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not (_HOST_RE.fullmatch(host) or (":" in host and _IPV6_RE.fullmatch(host))):
        raise InvalidURL(f"bad host name {host!r}")
    if parts.port == 0:
        raise InvalidURL("port 0 cannot be connected to")


def resolve(reference: str, base: str) -> str:
    """Resolve a (possibly relative) reference against a base URL as a browser does (the
    WHATWG URL standard); ValueError when that gives no URL.

    Not urljoin (RFC 3986), which differs where it matters: on an http page a browser reads
    ``https:example.org/a``, ``https:/example.org/a`` and backslashes for slashes as links to
    another site, so that is the link the reader follows, and the one to check and keep.
    """
    return join_url(base, reference)  # the parser strips what browsers strip, no more


def url_key(url: str) -> str:
    """SURT key of a URL (``com,example)/path?query``), the index's lookup key."""
    import surt  # imported when first used: it loads tldextract and requests (40 ms)

    try:
        return str(surt.surt(url))
    except Exception:
        return url.lower()


def ascii_host(url: str) -> str:
    """``url`` with a non-ASCII host IDNA-encoded after UTS 46 mapping, as browsers do (an
    A-label: ``xn--bcher-kva.example``); ValueError when IDNA cannot write that host."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    host, colon, port = hostport.partition(":")
    if host.isascii():
        return url
    import idna  # only for URLs with non-ASCII hosts

    host = idna.encode(host, uts46=True).decode("ascii")  # IDNAError is a ValueError
    return parts._replace(netloc=f"{userinfo}{at}{host}{colon}{port}").geturl()


def host_of(url: str) -> str:
    """The authority that politeness limits apply to: lower-case host plus explicit port."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port else host


def site_of(url: str) -> str:
    """Host without a leading ``www.`` (plus any explicit port), to tell same-site links."""
    return host_of(url).removeprefix("www.")


def site_or_empty(url: str) -> str:
    """:func:`site_of`, or "" for a URL it cannot read (it matches no site)."""
    try:
        return site_of(url)
    except ValueError:
        return ""


def scheme_of(reference: str) -> str:
    """Lower-case scheme of a reference, or '' when it has none."""
    try:
        return urlsplit(reference.strip()).scheme.lower()
    except ValueError:
        return ""
