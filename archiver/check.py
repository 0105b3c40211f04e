"""One health check of one URL, sorted into a :class:`Verdict` with the evidence behind it.

HEAD first, GET when HEAD is refused or looks wrong (many servers answer HEAD badly).
Transient failures (timeouts, 5xx, resets) are retried with doubling backoff before they
count, and a short ``Retry-After`` is waited out; the attempts share one time budget
(:func:`check_budget`), so retries cannot multiply a slow server's hold on a worker.  A page
that answers 200 is not trusted at once: the site is asked for a random sibling URL
(Bar-Yossef et al., WWW 2004).  If that gets a hard 404 the page is real; if it lands where
the link landed, or on a page with the same text, the link is a ``soft_404`` (or
``redirect_to_root`` when it was redirected there).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from archiver.bounded import RecentDict
from archiver.fingerprint import body_sketch, has_text, similarity
from archiver.net.client import Budget, Exchange, FetchError, FetchResult, HttpClient
from archiver.settings import Settings
from archiver.urls import host_of, site_of
from archiver.verdicts import Verdict

# Body bytes read by a GET check: enough to recognise a page, not enough to cost much.
CHECK_BODY_BYTES = 256 * 1024
MAX_PROBES = 50_000  # probe answers kept in memory (site and parent path each)
EVIDENCE_HEADERS = ("content-type", "content-length", "location", "retry-after", "server",
                    "last-modified", "etag", "cf-ray", "cf-mitigated", "x-robots-tag")
# Headers that change when the page changes: a HEAD check reads the body only when they do.
VALIDATORS = ("etag", "last-modified", "content-length")
BLOCKED_STATUSES = frozenset({401, 403, 999})
TRANSIENT = frozenset({Verdict.TIMEOUT, Verdict.SERVER_ERROR, Verdict.CONNECTION_ERROR})
SUCCESS = frozenset({Verdict.OK, Verdict.REDIRECT})
# A request that got no answer at all: nothing said of the page.
NO_ANSWER = frozenset({Verdict.TIMEOUT, Verdict.CONNECTION_ERROR, Verdict.CONNECTION_REFUSED,
                       Verdict.TLS_ERROR, Verdict.DNS_ERROR})
# Where Retry-After means "come back later" (RFC 9110 10.2.3): a 200 that carries one
# (some CDNs send it on everything) must not postpone a live link's next check.
RETRY_AFTER_STATUSES = frozenset({429, 503})
HARD_404 = frozenset({404, 410})
# A failed probe (no answer, or one that says nothing of junk URLs, such as a 503) is asked
# again after this long at most, so a site that was down a moment is soon judged again.
FAILED_PROBE_TTL = 300.0
# The home page's own file names: /index.html redirected to / is the page that was cited.
_INDEX_DOCUMENT = re.compile(r"/(?:index|default)\.(?:html?|shtml|php\d?|aspx?|jsp|cfm)", re.I)
# Where a sign-in or consent wall lands, and the parameters such pages keep the address in.
_WALL_PATH = re.compile(r"log[-_]?in|log[-_]?on|sign[-_]?in|oauth|consent|cookie|gdpr|"
                        r"(?<![a-z])(?:auth|sso|accounts?|sessions?)(?![a-z])", re.I)
RETURN_KEYS = frozenset({"next", "continue", "return", "returnto", "returnurl", "returnpath",
                         "redirect", "redirectto", "redirecturi", "redirecturl",
                         "redirectafterlogin", "goto", "service", "camefrom", "destination",
                         "dest", "target", "back", "backurl"})
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,5}$")  # a file name's extension, kept by probes
PROBE_DIGITS = 8  # a random number ID is this long at least (below 2**31 whatever it is)
# Longest Retry-After believed (a year), whatever the header says: a bound that keeps every
# later datetime sum far from year 9999.  Scheduling caps it lower (health.apply_verdict).
RETRY_AFTER_CEILING = 365 * 86400.0
# fetch.timeouts a check's attempts may spend beyond one per attempt: room for a HEAD that
# hangs and the GET that replaces it (see check_budget).
CHECK_BUDGET_SPARE_TIMEOUTS = 1


@dataclass
class CheckOutcome:
    """A verdict and the evidence behind it."""

    verdict: Verdict
    http_status: int | None = None
    final_url: str | None = None
    elapsed: float = 0.0
    error: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    sketch: str | None = None  # text fingerprint, when a body was read
    retry_after: float | None = None  # seconds the server asked us to wait

    @property
    def response_key(self) -> str:
        """What identifies "the same answer" for the author's overrides: a digest (64 hex
        digits, whatever the URL's length) of the verdict, the status and where the link
        landed, without the query, which login walls and CDNs fill anew on every request."""
        parts = urlsplit(self.final_url or "")
        host = (parts.hostname or "").lower()
        port = _port(parts)
        landed = (f"{parts.scheme.lower()}://{f'[{host}]' if ':' in host else host}"
                  f"{f':{port}' if port else ''}{parts.path}")
        text = f"{self.verdict}|{self.http_status}|{landed}"
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    @property
    def legacy_response_key(self) -> str:
        """The response key as stored before keys were digests (overrides made then)."""
        return f"{self.verdict}|{self.http_status}|{self.final_url}"[:64]

    def same_response(self, key: str) -> bool:
        """Whether ``key``, stored by an override, identifies this answer (either format)."""
        if is_legacy_response_key(key):
            return key == self.legacy_response_key
        return key == self.response_key


def is_legacy_response_key(key: str) -> bool:
    """Keys stored before they were digests are ``verdict|status|url``; digests hold no |."""
    return "|" in key


def _port(parts: SplitResult) -> int | None:
    try:
        return parts.port
    except ValueError:  # a final URL with a nonsense port still gets a key
        return None


def verdict_for_status(status: int) -> Verdict:
    """Verdict of a final HTTP status (before any redirect or soft-404 reasoning)."""
    if 200 <= status < 300:
        return Verdict.OK
    if status == 404:
        return Verdict.NOT_FOUND
    if status == 410:
        return Verdict.GONE
    if status == 429:
        return Verdict.RATE_LIMITED
    if status in BLOCKED_STATUSES:
        return Verdict.BLOCKED
    if status >= 500:
        return Verdict.SERVER_ERROR
    return Verdict.CLIENT_ERROR  # other 4xx, or a 3xx without a usable Location


def _is_root(url: str) -> bool:
    """True for a site's home page: ``/``, or its index file (``/index.html``)."""
    parts = urlsplit(url)
    return (parts.path in {"", "/"} or bool(_INDEX_DOCUMENT.fullmatch(parts.path))) \
        and not parts.query


def is_deep(url: str) -> bool:
    """True for anything but a site's home page: only deep links can be soft 404s."""
    return not _is_root(url)


def is_wall(asked: Iterable[str], final_url: str) -> bool:
    """True when a redirect ended on a sign-in or consent page that carries the address
    asked for in its query (``/login?next=/article``, ``/consent?continue=https://…``):
    the page is behind the wall, neither there nor gone.  ``asked``: the URLs of the hops.

    The landing page must look like a wall (its path, or the parameter's name as sign-in
    pages name it): an error page that carries the missing path
    (``/Error.aspx?aspxerrorpath=/old``) is a removed page, not a wall."""
    landed = urlsplit(final_url)
    hops = [urlsplit(url) for url in asked]
    if not landed.query or not hops or \
            (hops[0].netloc, hops[0].path) == (landed.netloc, landed.path):
        return False  # back where it was asked (a cookie or session hop), not a wall
    wall_path = bool(_WALL_PATH.search(landed.path))
    return any((wall_path or _squashed(key) in RETURN_KEYS) and _names_a_hop(value, hops)
               for key, value in parse_qsl(landed.query))


def _squashed(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def _names_a_hop(value: str, hops: list[SplitResult]) -> bool:
    """Whether ``value`` is the address of one of ``hops`` (absolute, or its path and
    query), perhaps with parameters added by the wall (``&cbrd=1``)."""
    given = urlsplit(value)
    if given.path in {"", "/"} and not given.query:
        return False  # a wall that sends everyone home afterwards says nothing
    added = set(parse_qsl(given.query, keep_blank_values=True))
    return any((not given.netloc or (given.scheme, given.netloc) == (hop.scheme, hop.netloc))
               and given.path == hop.path
               and set(parse_qsl(hop.query, keep_blank_values=True)) <= added
               for hop in hops)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds asked for by a Retry-After header (ASCII digits or an HTTP date), at most
    :data:`RETRY_AFTER_CEILING`; None when absent or not one of those."""
    if not value:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():  # str.isdigit also accepts "²" and other digits
        return min(float(text), RETRY_AFTER_CEILING)
    if not text.isascii():
        return None
    try:
        moment = parsedate_to_datetime(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    except (TypeError, ValueError, OverflowError):
        return None
    return min(max(0.0, seconds), RETRY_AFTER_CEILING)


def classify(url: str, result: FetchResult) -> CheckOutcome:
    """Verdict of a completed fetch of ``url`` (redirects followed)."""
    final = result.final
    verdict = verdict_for_status(final.status)
    error = None
    if verdict is Verdict.OK and len(result.exchanges) > 1:
        if is_wall((exchange.url for exchange in result.exchanges[:-1]), final.url):
            verdict, error = Verdict.BLOCKED, "redirected to a sign-in or consent page"
        elif is_deep(url) and _is_root(final.url) and site_of(final.url) == site_of(url):
            verdict = Verdict.REDIRECT_TO_ROOT
        else:
            verdict = Verdict.REDIRECT
    return CheckOutcome(verdict=verdict, http_status=final.status, final_url=final.url,
                        elapsed=result.elapsed, error=error,
                        evidence=_evidence(result.exchanges),
                        retry_after=retry_after_seconds(final.header("Retry-After"))
                        if final.status in RETRY_AFTER_STATUSES else None)


def _evidence(exchanges: list[Exchange]) -> dict[str, Any]:
    chain = [{"url": e.url, "status": e.status, "method": e.method} for e in exchanges]
    final = exchanges[-1] if exchanges else None
    headers = ({name: value for name, value in
                ((n, final.header(n)) for n in EVIDENCE_HEADERS) if value is not None}
               if final else {})
    return {"chain": chain, "headers": headers}


def _sketch_of(exchange: Exchange) -> str | None:
    if not 200 <= exchange.status < 300 or exchange.method == "HEAD":
        return None
    return body_sketch(exchange.body, exchange.header("Content-Type") or "",
                       exchange.header("Content-Encoding") or "", CHECK_BODY_BYTES * 8)


def _get(client: HttpClient, url: str, budget: Budget | None = None) -> CheckOutcome:
    try:
        result = client.fetch(url, "GET", max_body_bytes=CHECK_BODY_BYTES, budget=budget)
    except FetchError as exc:
        return _failed(exc, "GET")
    outcome = classify(url, result)
    outcome.evidence["method"] = "GET"
    outcome.sketch = _sketch_of(result.final)
    return outcome


def _attempt(client: HttpClient, url: str, previous: dict[str, str] | None,
             budget: Budget) -> CheckOutcome:
    """HEAD, then GET when HEAD fails, or when the page's validators changed since last time
    (the body is then read for its fingerprint; the first capture gave the baseline)."""
    try:
        outcome = classify(url, client.fetch(url, "HEAD", budget=budget))
        if outcome.verdict in SUCCESS:
            outcome.evidence["method"] = "HEAD"
            headers = outcome.evidence["headers"]
            changed = previous is not None and any(previous.get(n) != headers.get(n)
                                                   for n in VALIDATORS)
            if not changed:
                return outcome
            # The body is wanted for its text only: a GET that gets no answer (a reset, a
            # timeout, perhaps after a redirect hop) leaves the HEAD's success standing; a GET
            # answered otherwise decides.
            read = _get(client, url, budget)
            return outcome if read.verdict in NO_ANSWER else read
    except FetchError as exc:
        if exc.verdict in {Verdict.DNS_ERROR, Verdict.CONNECTION_REFUSED,
                           Verdict.FORBIDDEN_ADDRESS, Verdict.INVALID_URL,
                           Verdict.UNSUPPORTED_SCHEME, Verdict.TLS_ERROR}:
            return _failed(exc, "HEAD")
    return _get(client, url, budget)


def _failed(exc: FetchError, method: str) -> CheckOutcome:
    evidence = _evidence(exc.exchanges)
    evidence["method"] = method
    last = exc.exchanges[-1] if exc.exchanges else None
    return CheckOutcome(verdict=exc.verdict, http_status=last.status if last else None,
                        final_url=last.url if last else None, elapsed=exc.elapsed,
                        error=exc.message, evidence=evidence)


@dataclass(frozen=True)
class Probe:
    """How a site answers a URL that cannot exist."""

    url: str
    status: int | None
    final_url: str | None
    sketch: str | None


def _random_like(value: str) -> str:
    """A random value of ``value``'s kind: a number for a number (an article ID; a word would
    be refused by the site's router before its "not found" page could answer), a token else."""
    if value.isascii() and value.isdigit():
        length = max(len(value), PROBE_DIGITS)
        return "9" + "".join(secrets.choice("0123456789") for _ in range(length - 1))
    return "zz" + secrets.token_hex(8)


def _kind(value: str) -> str:
    """What :func:`_random_like` keeps of ``value``: whether it is a number."""
    return "#" if value.isascii() and value.isdigit() else "*"


def _last_part(path: str) -> tuple[str, str, str, str]:
    """``path`` as (parent, last part's stem, its extension, a trailing slash or "")."""
    path = path or "/"
    trailing = "/" if path.endswith("/") and path != "/" else ""
    parent, _, last = path.rstrip("/").rpartition("/")
    match = _SUFFIX.search(last)
    suffix = match.group() if match else ""
    return parent, last[:len(last) - len(suffix)], suffix, trailing


def probe_url(url: str) -> str:
    """A random sibling of ``url``: same parent path (or query keys), a random last part of
    the same kind (a number for a number) and extension."""
    parts = urlsplit(url)
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = urlencode([(key, _random_like(value)) for key, value in pairs])
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
    parent, stem, suffix, trailing = _last_part(parts.path)
    new_path = f"{parent}/{_random_like(stem)}{suffix}{trailing}"
    return urlunsplit((parts.scheme, parts.netloc, new_path, "", ""))


def _probe_key(url: str) -> str:
    """The links one probe answers for: a site's parent path (or query keys), and the kind
    and extension of the last part (a PDF's 404 says nothing of the folder's HTML pages)."""
    parts = urlsplit(url)
    if parts.query:
        keys = ",".join(sorted(f"{key}={_kind(value)}" for key, value in
                               parse_qsl(parts.query, keep_blank_values=True)))
        return f"{host_of(url)}{parts.path}?{keys}"
    parent, stem, suffix, trailing = _last_part(parts.path)
    return f"{host_of(url)}{parent}/{_kind(stem)}{suffix}{trailing}"


def _telling(probe: Probe) -> bool:
    """Whether a probe's answer says how the site answers junk URLs: a hard 404 or 410, or
    a success; a 503, 429, 403 or 400 says only that the site was busy or refused."""
    return probe.status is not None and (probe.status in HARD_404
                                         or 200 <= probe.status < 300)


class ProbeCache:
    """Random-URL probes per site and parent path, reused for ``health.probe_cache``.

    Checks of one site that start together wait for a single probe instead of each sending
    their own.  ``known`` seeds it with answers kept from earlier runs, as (key, age in
    seconds, probe); ``keep`` is told of each new answer, so that later runs can reuse it.  A
    probe that failed (no answer, or one that is not telling, such as a 503) is remembered by
    this cache only, and for :data:`FAILED_PROBE_TTL` at most: a site that was down for a
    moment must not lose its soft-404 detection for the next hour.
    """

    def __init__(self, ttl: float, known: Iterable[tuple[str, float, Probe]] = (),
                 keep: Callable[[str, Probe], None] | None = None,
                 max_entries: int = MAX_PROBES) -> None:
        self.ttl = ttl
        self._keep = keep
        self._lock = threading.Lock()
        now = time.monotonic()
        # The most recent answers only: a scheduler keeps this cache for its whole life.
        self._entries: RecentDict[str, tuple[float, Probe | None]] = RecentDict(max_entries)
        for key, age, probe in sorted(known, key=lambda item: -item[1]):  # the oldest first
            if _telling(probe):  # kept by an older version, which kept a 503 too
                self._entries[key] = (now - age, probe)
        self._inflight: dict[str, threading.Lock] = {}

    def _cached(self, key: str) -> tuple[bool, Probe | None]:
        with self._lock:
            cached = self._entries.get(key)
        if cached is None:
            return False, None
        holds = self.ttl if cached[1] is not None else min(self.ttl, FAILED_PROBE_TTL)
        if time.monotonic() - cached[0] < holds:
            return True, cached[1]
        return False, None

    def probe(self, client: HttpClient, url: str, *, wait: bool = True) -> Probe | None:
        """How the site answers a random sibling of ``url`` (None if the probe failed).

        With ``wait=False`` a probe another check is sending is not waited for (None).
        """
        key = _probe_key(url)
        hit, found = self._cached(key)
        if hit:
            return found
        with self._lock:
            gate = self._inflight.setdefault(key, threading.Lock())
        if not gate.acquire(blocking=wait):
            return None
        try:
            hit, found = self._cached(key)  # another thread may have probed meanwhile
            if hit:
                return found
            target = probe_url(url)
            try:
                final = client.fetch(target, "GET", max_body_bytes=CHECK_BODY_BYTES).final
                found = Probe(target, final.status, final.url, _sketch_of(final))
            except FetchError:
                found = None
            if found is not None and not _telling(found):
                found = None
            with self._lock:
                self._entries[key] = (time.monotonic(), found)
                self._inflight.pop(key, None)
            if found is not None and self._keep is not None:
                self._keep(key, found)
        finally:
            gate.release()
        return found


def _numbered(url: str) -> bool:
    """Whether ``url``'s probe puts a random number in place of a number (an article ID, but
    also a page or post number, which many sites answer past the end with the last one)."""
    parts = urlsplit(url)
    if parts.query:
        return any(_kind(value) == "#" for _key, value in parse_qsl(parts.query))
    return _kind(_last_part(parts.path)[1]) == "#"


def _judge_soft_404(client: HttpClient, url: str, outcome: CheckOutcome, settings: Settings,
                    probes: ProbeCache, baseline: str | None = None) -> CheckOutcome:
    """Turn a success into soft_404/redirect_to_root when the site answers junk the same way.

    ``baseline`` is the link's first fingerprint: a page whose number-shaped probe lands on
    the same text is a soft 404 only if its text has moved from what was first archived (a
    paginated list or a forum topic answers any number past its end with its last page)."""
    probe = probes.probe(client, url)
    if probe is None or probe.status is None:
        return outcome  # no telling answer: the page's own success stands
    outcome.evidence["probe"] = {"url": probe.url, "status": probe.status,
                                 "final_url": probe.final_url}
    if probe.status in HARD_404:
        return outcome  # the site says "not found" properly, so its 200s mean something
    if outcome.verdict is Verdict.REDIRECT and outcome.final_url == probe.final_url:
        outcome.verdict = Verdict.REDIRECT_TO_ROOT
        return outcome
    if outcome.sketch is None:
        body = _get(client, url)
        if body.verdict in TRANSIENT:
            return outcome  # a passing failure: the page's success stands, unjudged
        if body.verdict not in SUCCESS:
            return body
        outcome.sketch = body.sketch
    if outcome.sketch is None or probe.sketch is None or \
            not (has_text(outcome.sketch) or has_text(probe.sketch)):
        return outcome  # no text on either side (an app's script shell): nothing to compare
    alike = similarity(outcome.sketch, probe.sketch)
    threshold: float = settings["health.soft_404_similarity"]
    if alike is not None:
        outcome.evidence["probe"]["similarity"] = round(alike, 3)
        if alike >= threshold:
            kept = similarity(outcome.sketch, baseline) if baseline is not None else None
            if _numbered(url) and (kept is None or kept >= threshold):
                outcome.evidence["probe"]["note"] = (
                    "any number lands on this page, which is as first archived" if kept
                    is not None else "any number lands on this page; nothing archived to "
                    "compare it with")
            else:
                outcome.verdict = Verdict.SOFT_404
    return outcome


def check_budget(settings: Settings) -> float:
    """Request time the attempts of one check may spend: ``fetch.timeout`` per attempt, plus
    one more (a HEAD that hangs, then its GET).  Waits between attempts are not counted."""
    attempts: int = settings["health.retries"] + 1
    timeout: float = settings["fetch.timeout"]
    return (attempts + CHECK_BUDGET_SPARE_TIMEOUTS) * timeout


def check_url(client: HttpClient, url: str, settings: Settings, *,
              probes: ProbeCache | None = None,
              previous: dict[str, str] | None = None,
              baseline: str | None = None) -> CheckOutcome:
    """Check ``url``: retries, Retry-After, HEAD/GET, and soft-404 probing when ``probes``.

    ``previous`` holds the validator headers of the last check; when they are unchanged a
    HEAD answer is enough, otherwise the body is read for its fingerprint.  ``baseline`` is
    the link's first fingerprint (see :func:`_judge_soft_404`).  The attempts
    stop when they have spent :func:`check_budget`; the soft-404 probes are not counted.
    """
    retries: int = settings["health.retries"]
    backoff: float = settings["health.retry_backoff"]
    patience: float = settings["health.max_retry_after"]
    started = time.monotonic()
    budget = Budget(check_budget(settings))
    attempts = 0
    if probes is not None and is_deep(url):
        # The first check of a site probes before its own request, so the checks of the site
        # that start beside it find the probe answered instead of waiting for it afterwards.
        probes.probe(client, url, wait=False)
    while True:
        attempts += 1
        outcome = _attempt(client, url, previous, budget)
        waits = outcome.retry_after is not None and outcome.retry_after <= patience and \
            outcome.verdict in TRANSIENT | {Verdict.RATE_LIMITED}
        if attempts > retries or not (outcome.verdict in TRANSIENT or waits) or \
                budget.left <= 0:
            break
        time.sleep(outcome.retry_after if waits and outcome.retry_after is not None
                   else backoff * 2 ** (attempts - 1))
    if outcome.verdict in SUCCESS and probes is not None and is_deep(url):
        outcome = _judge_soft_404(client, url, outcome, settings, probes, baseline)
    outcome.evidence["attempts"] = attempts
    outcome.elapsed = time.monotonic() - started
    return outcome
