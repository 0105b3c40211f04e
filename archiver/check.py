"""One health check of one URL: HEAD first, GET when HEAD is refused or looks wrong, transient
failures retried with backoff, and every outcome sorted into a :class:`Verdict` with evidence."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from archiver.net.client import Exchange, FetchError, FetchResult, HttpClient
from archiver.settings import Settings
from archiver.urls import site_of
from archiver.verdicts import Verdict

# Body bytes read by a GET check: enough to recognise a page, not enough to cost much.
CHECK_BODY_BYTES = 256 * 1024
EVIDENCE_HEADERS = ("content-type", "content-length", "location", "retry-after", "server",
                    "last-modified", "cf-ray", "cf-mitigated", "x-robots-tag")
BLOCKED_STATUSES = frozenset({401, 403, 999})
TRANSIENT = frozenset({Verdict.TIMEOUT, Verdict.SERVER_ERROR, Verdict.CONNECTION_ERROR})


@dataclass
class CheckOutcome:
    """A verdict and the evidence behind it."""

    verdict: Verdict
    http_status: int | None = None
    final_url: str | None = None
    elapsed: float = 0.0
    error: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


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
    if 300 <= status < 400:  # a redirect without a usable Location
        return Verdict.CLIENT_ERROR
    return Verdict.CLIENT_ERROR


def _is_deep(url: str) -> bool:
    parts = urlsplit(url)
    return parts.path not in {"", "/"} or bool(parts.query)


def _redirected_to_root(url: str, final_url: str) -> bool:
    """A deep link that now lands on the home page of the same site: the page was removed."""
    final = urlsplit(final_url)
    return (_is_deep(url) and final.path in {"", "/"} and not final.query
            and site_of(final_url) == site_of(url))


def classify(url: str, result: FetchResult) -> CheckOutcome:
    """Verdict of a completed fetch of ``url``."""
    final = result.final
    verdict = verdict_for_status(final.status)
    if verdict is Verdict.OK and len(result.exchanges) > 1:
        verdict = (Verdict.REDIRECT_TO_ROOT if _redirected_to_root(url, final.url)
                   else Verdict.REDIRECT)
    return CheckOutcome(verdict=verdict, http_status=final.status, final_url=final.url,
                        elapsed=result.elapsed, evidence=_evidence(result.exchanges))


def _evidence(exchanges: list[Exchange]) -> dict[str, Any]:
    chain = [{"url": e.url, "status": e.status, "method": e.method} for e in exchanges]
    final = exchanges[-1] if exchanges else None
    headers = ({name: value for name, value in
                ((n, final.header(n)) for n in EVIDENCE_HEADERS) if value is not None}
               if final else {})
    return {"chain": chain, "headers": headers}


def _attempt(client: HttpClient, url: str) -> CheckOutcome:
    """HEAD, then GET when HEAD is not supported or gives anything but success."""
    try:
        head = client.fetch(url, "HEAD")
        outcome = classify(url, head)
        if outcome.verdict in {Verdict.OK, Verdict.REDIRECT}:
            outcome.evidence["method"] = "HEAD"
            return outcome
    except FetchError as exc:
        if exc.verdict in {Verdict.DNS_ERROR, Verdict.CONNECTION_REFUSED,
                           Verdict.FORBIDDEN_ADDRESS, Verdict.INVALID_URL,
                           Verdict.UNSUPPORTED_SCHEME, Verdict.TLS_ERROR}:
            return _failed(exc, "HEAD")
    # Many servers answer HEAD wrongly (405, 404, 403); the GET answer is the one that counts.
    try:
        get = client.fetch(url, "GET", max_body_bytes=CHECK_BODY_BYTES)
    except FetchError as exc:
        return _failed(exc, "GET")
    outcome = classify(url, get)
    outcome.evidence["method"] = "GET"
    return outcome


def _failed(exc: FetchError, method: str) -> CheckOutcome:
    evidence = _evidence(exc.exchanges)
    evidence["method"] = method
    last = exc.exchanges[-1] if exc.exchanges else None
    return CheckOutcome(verdict=exc.verdict, http_status=last.status if last else None,
                        final_url=last.url if last else None, elapsed=exc.elapsed,
                        error=exc.message, evidence=evidence)


def check_url(client: HttpClient, url: str, settings: Settings) -> CheckOutcome:
    """Check ``url``; transient failures are retried with doubling backoff before they count."""
    retries: int = settings["health.retries"]
    backoff: float = settings["health.retry_backoff"]
    started = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        outcome = _attempt(client, url)
        if outcome.verdict not in TRANSIENT or attempts > retries:
            break
        time.sleep(backoff * 2 ** (attempts - 1))
    outcome.evidence["attempts"] = attempts
    outcome.elapsed = time.monotonic() - started
    return outcome
