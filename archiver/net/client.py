"""HttpClient: timeouts, a whole-request deadline, body cap, redirect limit, politeness and the
private-network guard, for every outbound request.

``fetch.timeout`` bounds a whole fetch, every redirect hop included: each hop gets what the
earlier hops left.  Time spent waiting for a politeness slot is not counted (it is our own
pacing, not the server holding us).  A :class:`Budget` passed to ``fetch`` is charged the same
way, so several fetches (a check's retries) can share one bound.  Bytes can be shared too: the
bodies of fetches given one :class:`ByteBudget` (a page's requisites, in parallel) keep at most
what it holds between them.

The guard runs inside the connection: the client resolves the host itself, refuses any address
that is not public (unless ``fetch.allow_private_networks``), and connects to exactly the address
it checked, so a DNS answer that changes between check and connect (rebinding) cannot slip by.
Every redirect hop makes a new connection check.  Bodies are kept as received on the wire, with
their Content-Encoding (de-chunked), because WARC records keep them that way.
"""

from __future__ import annotations

import base64
import contextlib
import heapq
import ipaddress
import itertools
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    LocationParseError,
    LocationValueError,
    NameResolutionError,
    NewConnectionError,
    SSLError,
)
from urllib3.exceptions import TimeoutError as Urllib3TimeoutError
from urllib3.poolmanager import PoolManager
from urllib3.util import SKIP_HEADER

from archiver.clock import utcnow
from archiver.net.cookies import SiteCookies
from archiver.net.guard import AddressPolicy, parse_networks, refusal_message
from archiver.net.politeness import HostLimiter, TurnAbandoned
from archiver.settings import Settings
from archiver.urls import FETCHABLE_SCHEMES, ascii_host, host_of, resolve
from archiver.verdicts import Verdict

READ_CHUNK = 64 * 1024
ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
# http.client adds Host (IDNA-encoded, port only when not the default) and, with a body,
# urllib3 adds Content-Length; everything else sent is here or in the caller's headers.
BASE_HEADERS = {"Accept": ACCEPT, "Accept-Encoding": "gzip, deflate", "Connection": "keep-alive"}
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
BodyFilter = Callable[[int, list[tuple[str, str]]], bool]


class ForbiddenAddressError(NewConnectionError):
    """The destination resolved to an address the guard refuses."""

    def __str__(self) -> str:
        # The message alone: urllib3 puts the connection's repr in front, which means nothing
        # to the author reading why a link was not fetched.
        return self._message


class FetchError(Exception):
    """A request that produced no usable response; ``verdict`` says what kind of failure."""

    def __init__(self, verdict: Verdict, message: str,
                 exchanges: list[Exchange] | None = None, elapsed: float = 0.0) -> None:
        super().__init__(message)
        self.verdict = verdict
        self.message = message
        self.exchanges = exchanges or []
        self.elapsed = elapsed


@dataclass
class Exchange:
    """One request and its response, as they crossed the wire."""

    url: str
    method: str
    request_head: bytes
    status: int
    reason: str
    http_version: str
    headers: list[tuple[str, str]]
    body: bytes
    started_at: datetime
    elapsed: float
    peer_ip: str | None = None
    # When the body was cut: "length" (a cap), "time" (the deadline) or "disconnect" (the
    # server closed before the end), as WARC-Truncated says it.
    truncated: str | None = None
    body_skipped: bool = False  # the caller declined the body after seeing the headers

    def header(self, name: str) -> str | None:
        """First value of a response header, case-insensitively."""
        lowered = name.lower()
        return next((value for key, value in self.headers if key.lower() == lowered), None)

    @property
    def location(self) -> str | None:
        """Absolute redirect target, when this is a redirect."""
        target = self.header("Location")
        if self.status in REDIRECT_STATUSES and target:
            target = _utf8_header(target)
            try:
                return resolve(target, self.url)
            except ValueError:  # no URL to a browser either: the next hop reports it
                return target.strip()
        return None

    @property
    def content_type(self) -> str:
        """Media type without parameters, lower case ('' when absent)."""
        value = self.header("Content-Type") or ""
        return value.split(";", 1)[0].strip().lower()


@dataclass
class FetchResult:
    """A fetched URL with every hop of its redirect chain; ``final`` is the last response."""

    exchanges: list[Exchange] = field(default_factory=list)

    @property
    def final(self) -> Exchange:
        """The last response of the chain."""
        return self.exchanges[-1]

    @property
    def elapsed(self) -> float:
        """Seconds spent on the whole chain."""
        return sum(exchange.elapsed for exchange in self.exchanges)


@dataclass
class Budget:
    """Seconds of request time that one or more fetches may spend between them."""

    seconds: float
    spent: float = 0.0

    @property
    def left(self) -> float:
        """Seconds still to spend (0 or less when used up)."""
        return self.seconds - self.spent


class ByteBudget:
    """Bytes of response bodies that several fetches, in any threads, may keep between them."""

    def __init__(self, size: int) -> None:
        self._left = max(0, size)
        self._lock = threading.Lock()

    @property
    def remaining(self) -> int:
        """Bytes still to give (0 when spent)."""
        return self._left

    def take(self, size: int) -> int:
        """Take up to ``size`` bytes; return how many were given (fewer when it runs out)."""
        with self._lock:
            given = min(size, self._left)
            self._left -= given
            return given

    def give_back(self, size: int) -> None:
        """Return bytes taken for a body that was not kept after all."""
        with self._lock:
            self._left += size


class NotBegun(Exception):
    """A request of a fetch was not made: what it was given ran out before it could begin.
    ``exchanges`` holds the redirect hops received before it (their bytes were spent)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.exchanges: list[Exchange] = []


class ByteBudgetSpent(NotBegun):
    """The fetch's :class:`ByteBudget` was spent before the request could begin."""


class DeadlinePassed(NotBegun):
    """The fetch's ``deadline`` passed before the request could begin."""


class Stopped(NotBegun):
    """The fetch's ``stop`` was set before the request could begin (while it waited for its
    host's turn, perhaps)."""


def _utf8_header(text: str) -> str:
    """A header value read as latin-1 (as http.client does), read as UTF-8 when its bytes are
    valid UTF-8: browsers and curl follow a raw UTF-8 ``Location`` to the page it names."""
    if text.isascii():
        return text
    try:
        return text.encode("latin-1").decode("utf-8")
    except UnicodeError:  # not latin-1 text, or not UTF-8 bytes: keep what was read
        return text


class _Watchdog:
    """One thread that cuts the sockets of requests whose deadline passed (no thread per
    request): a heap of (deadline, ticket, sockets); finished requests are dropped lazily."""

    def __init__(self) -> None:
        self._wake = threading.Condition()
        self._heap: list[tuple[float, int, list[socket.socket]]] = []
        self._live: set[int] = set()
        self._sequence = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, expires_at: float, sockets: list[socket.socket]) -> int:
        """Cut ``sockets`` at ``expires_at`` unless cancelled; return a ticket."""
        ticket = next(self._sequence)
        with self._wake:
            heapq.heappush(self._heap, (expires_at, ticket, sockets))
            self._live.add(ticket)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fetch-watchdog",
                                                daemon=True)
                self._thread.start()
            if self._heap[0][1] == ticket:
                self._wake.notify()  # a new earliest deadline; otherwise the wait stays right
        return ticket

    def cancel(self, ticket: int) -> None:
        """The request finished in time."""
        with self._wake:
            self._live.discard(ticket)

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._wake.wait()
                    continue
                expires_at, ticket, sockets = self._heap[0]
                delay = expires_at - time.monotonic()
                if delay > 0:
                    self._wake.wait(delay)
                    continue
                heapq.heappop(self._heap)
                self._live.discard(ticket)
            _shut_all(sockets)


_WATCHDOG = _Watchdog()


class _Deadline(threading.local):
    """Per-thread deadline of the request in hand; sockets register so they can be cut."""

    expires_at: float | None = None
    ticket: int | None = None
    sockets: list[socket.socket]

    def __init__(self) -> None:
        self.sockets = []

    def arm(self, seconds: float) -> None:
        self.expires_at = time.monotonic() + seconds
        self.sockets = []
        self.ticket = _WATCHDOG.watch(self.expires_at, self.sockets)

    def disarm(self) -> None:
        if self.ticket is not None:
            _WATCHDOG.cancel(self.ticket)
        self.ticket = None
        self.expires_at = None
        self.sockets = []

    def remaining(self, default: float) -> float:
        if self.expires_at is None:
            return default
        return max(0.001, min(default, self.expires_at - time.monotonic()))

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and time.monotonic() >= self.expires_at


def _shut_all(sockets: list[socket.socket]) -> None:
    for sock in list(sockets):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


_DEADLINE = _Deadline()


class _GuardedConnectionMixin:
    """Resolves, checks and connects to one checked address; remembers the peer address."""

    policy: AddressPolicy = AddressPolicy(allow_private=False)
    peer_ip: str | None = None
    _sent: list[str]
    host: str
    port: int
    timeout: Any
    socket_options: Any
    sock: socket.socket | None

    def _new_conn(self) -> socket.socket:
        host = self.host.strip("[]")
        try:
            infos = socket.getaddrinfo(host, self.port, 0, socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc  # type: ignore[arg-type]
        except UnicodeError as exc:
            raise NewConnectionError(self, f"bad host name {self.host!r}") from exc  # type: ignore[arg-type]
        refused: list[str] = []
        last_error: OSError | None = None
        for family, socktype, proto, _name, sockaddr in infos:
            address = str(sockaddr[0])
            reason = self.policy.refusal(address)
            if reason:
                refused.append(reason)
                continue
            sock = socket.socket(family, socktype, proto)
            try:
                for option in self.socket_options or ():
                    sock.setsockopt(*option)
                sock.settimeout(_DEADLINE.remaining(_timeout_seconds(self.timeout)))
                _DEADLINE.sockets.append(sock)
                sock.connect(sockaddr)
            except TimeoutError as exc:
                sock.close()
                raise ConnectTimeoutError(self, f"connect to {self.host} timed out") from exc
            except OSError as exc:
                sock.close()
                last_error = exc
                continue
            self.peer_ip = str(sock.getpeername()[0])
            return sock
        if refused and last_error is None:
            raise ForbiddenAddressError(self, refusal_message(refused))  # type: ignore[arg-type]
        raise NewConnectionError(self, f"failed to connect: {last_error}") from last_error  # type: ignore[arg-type]

    def putrequest(self, method: str, url: str, *args: Any, **kwargs: Any) -> None:
        self._sent = [f"{method} {url} HTTP/1.1"]
        super().putrequest(method, url, *args, **kwargs)  # type: ignore[misc]

    def putheader(self, header: str, *values: Any) -> None:
        super().putheader(header, *values)  # type: ignore[misc]
        if not any(value is SKIP_HEADER for value in values):  # urllib3 sent nothing then
            text = "\r\n\t".join(value.decode("latin-1") if isinstance(value, bytes)
                                  else str(value) for value in values)
            self._sent.append(f"{header}: {text}")

    def getresponse(self) -> Any:
        if self.sock is not None and self.sock not in _DEADLINE.sockets:
            _DEADLINE.sockets.append(self.sock)
        response = super().getresponse()  # type: ignore[misc]
        response.peer_ip = self.peer_ip
        # The request line and headers exactly as http.client wrote them, for the WARC record.
        response.request_head = ("\r\n".join(self._sent) + "\r\n\r\n").encode("latin-1",
                                                                             "replace")
        return response


def _timeout_seconds(timeout: Any) -> float:
    return float(timeout) if isinstance(timeout, int | float) else 30.0


def _pool_classes(policy: AddressPolicy) -> dict[str, type[HTTPConnectionPool]]:
    http_conn = type("GuardedHTTPConnection", (_GuardedConnectionMixin, HTTPConnection),
                     {"policy": policy})
    https_conn = type("GuardedHTTPSConnection", (_GuardedConnectionMixin, HTTPSConnection),
                      {"policy": policy})
    http_pool = type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn})
    https_pool = type("GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn})
    return {"http": http_pool, "https": https_pool}


def _classify(exc: BaseException) -> Verdict:
    """Sort a transport exception into a verdict by walking its causes."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    kinds: list[BaseException] = []
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        kinds.append(current)
        for nested in (current.__cause__, current.__context__, getattr(current, "reason", None),
                       *[arg for arg in getattr(current, "args", ()) if
                         isinstance(arg, BaseException)]):
            if isinstance(nested, BaseException):
                stack.append(nested)
    checks: list[tuple[tuple[type[BaseException], ...], Verdict]] = [
        ((ForbiddenAddressError,), Verdict.FORBIDDEN_ADDRESS),
        ((NameResolutionError, socket.gaierror), Verdict.DNS_ERROR),
        ((SSLError,), Verdict.TLS_ERROR),
        ((ConnectionRefusedError,), Verdict.CONNECTION_REFUSED),
        # urllib3 makes NewConnectionError a ConnectTimeoutError; it is not a timeout.
        ((NewConnectionError,), Verdict.CONNECTION_ERROR),
        ((Urllib3TimeoutError, TimeoutError), Verdict.TIMEOUT),
        ((LocationValueError,), Verdict.INVALID_URL),
    ]
    for types, verdict in checks:
        if any(isinstance(kind, types) for kind in kinds):
            return verdict
    import ssl
    if any(isinstance(kind, ssl.SSLError) for kind in kinds):
        return Verdict.TLS_ERROR
    return Verdict.CONNECTION_ERROR


class HttpClient:
    """The outbound HTTP client of one run; thread-safe, shares one politeness limiter."""

    def __init__(self, settings: Settings, limiter: HostLimiter | None = None) -> None:
        self.user_agent: str = settings["fetch.user_agent"]
        self.timeout: float = settings["fetch.timeout"]
        self.max_body_bytes: int = settings["fetch.max_body_bytes"]
        self.max_redirects: int = settings["fetch.max_redirects"]
        self.allow_private: bool = settings["fetch.allow_private_networks"]
        self.limiter = limiter or HostLimiter(settings["fetch.per_host_concurrency"],
                                              settings["fetch.per_host_delay"],
                                              settings["fetch.concurrency"])
        policy = self.policy = AddressPolicy(self.allow_private,
                                             parse_networks(settings["fetch.allowed_networks"]))
        # A plain PoolManager: no proxy from the environment (it would bypass the guard), no
        # retries and no redirects of its own (fetch follows them, checking each hop).
        self.pool = PoolManager(num_pools=64, maxsize=max(10, settings["fetch.concurrency"] * 2),
                                retries=False)
        self.pool.pool_classes_by_scheme = _pool_classes(policy)
        self.base_headers = {"User-Agent": self.user_agent, **BASE_HEADERS}
        # Cookies a site sets are sent back to it, as a browser would (a redirect that sets a
        # cookie and expects it on the next hop works), for an hour after its last request.
        self.cookies = SiteCookies()

    def close(self) -> None:
        """Close pooled connections."""
        self.pool.clear()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fetch(self, url: str, method: str = "GET", *, follow_redirects: bool = True,
              max_body_bytes: int | None = None,
              headers: dict[str, str] | None = None, body: bytes | None = None,
              want_body: BodyFilter | None = None,
              budget: Budget | None = None,
              byte_budget: ByteBudget | None = None,
              deadline: float | None = None,
              stop: threading.Event | None = None) -> FetchResult:
        """Fetch ``url``, following redirects; raise :class:`FetchError` when nothing came back.

        A redirect chain that ends in a loop or runs too long raises too, carrying the hops
        received so far in ``exchanges``; so does one that outlasts ``fetch.timeout``, which
        bounds the whole chain (a ``timeout`` verdict).  ``budget``, when given, bounds it
        too and is charged the time spent.  ``want_body(status, headers)`` returning False
        leaves a response's body unread (``body_skipped``), e.g. for an oversized video.

        ``byte_budget``, when given, is shared with other fetches: every chunk of a body read
        takes from it, and a body it cannot give a whole chunk keeps what it gave and is cut
        there, marked ``truncated == "length"`` as a ``max_body_bytes`` cut is.  A request not
        begun (its host's slot taken) when it is spent is not made: :class:`ByteBudgetSpent`.

        ``deadline``, a ``time.monotonic()`` instant, bounds every request by wall-clock time
        (a capture's page time): each gets at most what is left of it once its host's slot is
        taken, and one not begun by then is not made: :class:`DeadlinePassed`.

        ``stop``, when given, ends the wait for a host's turn once it is set: no request
        begins after it (:class:`Stopped`).
        """
        result = FetchResult()
        seen = {url}
        current = url
        started = time.monotonic()
        budgets = (Budget(self.timeout),) if budget is None else (Budget(self.timeout), budget)
        while True:
            try:
                exchange = self._one(current, method, max_body_bytes, headers, body, result,
                                     want_body, budgets, byte_budget, deadline, stop)
            except NotBegun as exc:
                exc.exchanges = result.exchanges
                raise
            except TurnAbandoned:
                stopped = Stopped(f"stopped before requesting {current}")
                stopped.exchanges = result.exchanges
                raise stopped from None
            result.exchanges.append(exchange)
            target = exchange.location
            if not follow_redirects or target is None:
                return result
            if target in seen:
                raise FetchError(Verdict.REDIRECT_LOOP, f"redirect loop back to {target}",
                                 result.exchanges, time.monotonic() - started)
            if len(result.exchanges) > self.max_redirects:
                raise FetchError(Verdict.TOO_MANY_REDIRECTS,
                                 f"more than {self.max_redirects} redirects",
                                 result.exchanges, time.monotonic() - started)
            seen.add(target)
            current = target
            if exchange.status == 303 and method != "HEAD":
                method, body = "GET", None

    def _one(self, url: str, method: str, max_body_bytes: int | None,
             extra_headers: dict[str, str] | None, body: bytes | None,
             result: FetchResult, want_body: BodyFilter | None,
             budgets: tuple[Budget, ...], byte_budget: ByteBudget | None,
             deadline: float | None, stop: threading.Event | None) -> Exchange:
        parts = urlsplit(url)
        if parts.scheme.lower() not in FETCHABLE_SCHEMES:
            raise FetchError(Verdict.UNSUPPORTED_SCHEME, f"cannot fetch {parts.scheme!r} URLs",
                             result.exchanges)
        if not parts.hostname:
            raise FetchError(Verdict.INVALID_URL, f"no host in {url!r}", result.exchanges)
        cap = self.max_body_bytes if max_body_bytes is None else max_body_bytes
        request_headers = {**self.base_headers, **extra_headers} if extra_headers else \
            self.base_headers
        if "@" in parts.netloc and "Authorization" not in request_headers:
            request_headers = {**request_headers, **_basic_auth(parts)}
        allowed = min(budget.left for budget in budgets)
        if allowed <= 0:
            spent = "fetch.timeout" if budgets[0].left <= 0 else "the time budget"
            raise FetchError(Verdict.TIMEOUT, f"{spent} was used up before requesting {url}",
                             result.exchanges)
        refused = self._refused_before_asking(parts.hostname)
        if refused:  # nothing will reach the host: no turn of its to wait for
            raise FetchError(Verdict.FORBIDDEN_ADDRESS, refused, result.exchanges)
        started_at = utcnow()
        started = time.monotonic()
        with self.limiter.slot(host_of(url), stop):
            if byte_budget is not None and byte_budget.remaining <= 0:
                raise ByteBudgetSpent(f"no bytes left to fetch {url}")
            entered = time.monotonic()
            if deadline is not None:  # read once the slot is ours: the wait for it counts
                if deadline <= entered:
                    raise DeadlinePassed(f"the deadline passed before requesting {url}")
                allowed = min(allowed, deadline - entered)
            _DEADLINE.arm(allowed)
            try:
                return self._exchange(url, method, request_headers, body, cap, started_at,
                                      started, want_body, byte_budget)
            except FetchError:
                raise
            except (HTTPError, OSError, ValueError) as exc:
                verdict = Verdict.TIMEOUT if _DEADLINE.expired else _classify(exc)
                raise FetchError(verdict, _describe(exc), result.exchanges,
                                 time.monotonic() - started) from exc
            finally:
                _DEADLINE.disarm()
                for budget in budgets:
                    budget.spent += time.monotonic() - entered

    def _refused_before_asking(self, hostname: str) -> str | None:
        """The guard's refusal, when it is known without resolving the name: an address
        written in the URL, or a loopback name (RFC 6761).  Other names are checked at connect,
        after resolution, as before."""
        name = hostname.rstrip(".").lower()
        if name == "localhost" or name.endswith(".localhost"):
            addresses = ["127.0.0.1", "::1"]
        else:
            try:
                addresses = [str(ipaddress.ip_address(name.split("%", 1)[0]))]
            except ValueError:
                return None
        reasons = [self.policy.refusal(address) for address in addresses]
        if all(reasons):
            return refusal_message([reason for reason in reasons if reason])
        return None

    def _exchange(self, url: str, method: str, request_headers: dict[str, str],
                  body: bytes | None, cap: int, started_at: datetime, started: float,
                  want_body: BodyFilter | None, byte_budget: ByteBudget | None) -> Exchange:
        remaining = _DEADLINE.remaining(self.timeout)
        reusable = False
        # urllib3 percent-encodes the path and query itself; Exchange.url stays as given.
        wire_url = url if url.isascii() else _ascii_host(url)
        if "Cookie" not in request_headers:
            request_headers = self.cookies.add_to(wire_url, request_headers)
        raw = self.pool.urlopen(method, wire_url, body=body, headers=request_headers,
                                redirect=False, retries=False, timeout=remaining,
                                preload_content=False, decode_content=False)
        try:
            chunks: list[bytes] = []
            size = 0
            truncated: str | None = None
            headers = list(raw.headers.items())
            if "Set-Cookie" in raw.headers or "Set-Cookie2" in raw.headers:
                self.cookies.keep(wire_url, headers)
            skipped = want_body is not None and not want_body(raw.status, headers)
            if method != "HEAD" and not skipped:
                while True:
                    if _DEADLINE.expired:
                        truncated = "time"
                        break
                    try:
                        chunk = raw.read1(READ_CHUNK, decode_content=False)
                    except (HTTPError, OSError):
                        # The status and headers came: the answer stands, its body marked
                        # cut (WARC-Truncated's values) by the deadline or by the server
                        # closing early (a chunked body without its last chunk, a short
                        # Content-Length), as a browser shows what it received.
                        truncated = "time" if _DEADLINE.expired else "disconnect"
                        break
                    if not chunk:
                        reusable = True  # the whole body was read
                        break
                    kept = min(len(chunk), cap - size)
                    if byte_budget is not None:
                        kept = byte_budget.take(kept)
                    chunks.append(chunk if kept == len(chunk) else chunk[:kept])
                    size += kept
                    if kept < len(chunk):  # the fetch's cap, or the shared budget, is reached
                        truncated = "length"
                        break
            else:
                reusable = method == "HEAD"
            version = {10: "HTTP/1.0", 11: "HTTP/1.1", 20: "HTTP/2"}.get(raw.version, "HTTP/1.1")
            return Exchange(
                url=url, method=method,
                request_head=getattr(raw, "request_head", b""),
                status=raw.status, reason=raw.reason or "",
                http_version=version, headers=headers,
                body=b"".join(chunks), started_at=started_at,
                elapsed=time.monotonic() - started,
                peer_ip=getattr(raw, "peer_ip", None), truncated=truncated,
                body_skipped=skipped,
            )
        finally:
            if not reusable:
                raw.close()  # body left unread or cut: the connection cannot be reused
            raw.release_conn()  # back to the pool (a closed one reconnects when next used)


def _basic_auth(parts: SplitResult) -> dict[str, str]:
    """The Authorization header for credentials written in the URL (user:password@host)."""
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    if not (user or password):
        return {}
    pair = f"{user}:{password}"
    try:
        raw = pair.encode("latin-1")
    except UnicodeEncodeError:
        raw = pair.encode("utf-8")
    return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}


def _ascii_host(url: str) -> str:
    """``url`` with a non-ASCII host IDNA-encoded (:func:`archiver.urls.ascii_host`); a host
    IDNA cannot write is a LocationParseError, as urllib3 reports a bad URL."""
    try:
        return ascii_host(url)
    except ValueError as exc:
        raise LocationParseError(f"invalid host name in {url!r}: {exc}") from exc


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 500 else text[:497] + "..."
