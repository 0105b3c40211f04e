"""From a check's verdict to the link's state and its next check time.

A link is ``dead`` only after ``health.dead_after_failures`` consecutive failures spanning at
least ``health.failure_spacing`` (IABot's rule); before that it is ``failing``.  Blocked and
rate-limited answers never count towards death: they make the state ``unknown``.  A server's
``Retry-After`` can postpone the next check, by at most ``health.recheck_dead``.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta

from archiver.models import Link, LinkState
from archiver.settings import Settings
from archiver.verdicts import Verdict

SUCCESS_VERDICTS = frozenset({Verdict.OK, Verdict.REDIRECT})
REVIEW_VERDICTS = frozenset({Verdict.BLOCKED, Verdict.RATE_LIMITED, Verdict.FORBIDDEN_ADDRESS,
                             Verdict.UNSUPPORTED_SCHEME})
# Failures that no recheck can change: the URL itself is broken.
PERMANENT_VERDICTS = frozenset({Verdict.INVALID_URL})
TRANSIENT_VERDICTS = frozenset({Verdict.TIMEOUT, Verdict.SERVER_ERROR,
                                Verdict.CONNECTION_ERROR})
JITTER_FRACTION = 0.1


def with_jitter(now: datetime, seconds: float, rng: random.Random | None = None) -> datetime:
    """``now + seconds``, spread by up to 10% so rechecks of one batch do not bunch up."""
    spread = seconds * JITTER_FRACTION
    offset = (rng or random).uniform(-spread, spread) if spread else 0.0
    return now + timedelta(seconds=max(0.0, seconds + offset))


def apply_verdict(link: Link, verdict: Verdict, checked_at: datetime, settings: Settings,
                  retry_after: float | None = None) -> None:
    """Update the link's counters, state and next check time after a check.

    A ``Retry-After`` the server sent is honoured: the next check is never sooner.  It is
    believed up to ``health.recheck_dead``, the longest a link otherwise waits, so that no
    server can park a link (or keep a failing one from ever being called dead).
    """
    _apply(link, verdict, checked_at, settings)
    wait = retry_delay(retry_after, settings)
    if wait and link.next_check_at is not None:
        link.next_check_at = max(link.next_check_at, checked_at + timedelta(seconds=wait))


def retry_delay(retry_after: float | None, settings: Settings) -> float:
    """Seconds a Retry-After may postpone the next check: 0 to ``health.recheck_dead``."""
    if retry_after is None or math.isnan(retry_after):
        return 0.0
    return min(max(0.0, retry_after), float(settings["health.recheck_dead"]))


def _apply(link: Link, verdict: Verdict, checked_at: datetime, settings: Settings) -> None:
    link.last_verdict = verdict
    link.last_checked_at = checked_at
    if verdict in SUCCESS_VERDICTS:
        link.state = LinkState.ALIVE
        link.consecutive_failures = 0
        link.first_failure_at = None
        link.last_alive_at = checked_at
        link.dead_notified_at = None  # a later death is news again
        link.next_check_at = with_jitter(checked_at, settings["health.recheck_alive"])
        return
    if verdict in REVIEW_VERDICTS:
        link.state = LinkState.UNKNOWN
        link.next_check_at = with_jitter(checked_at, settings["health.failure_spacing"])
        return
    if verdict in PERMANENT_VERDICTS:
        link.state = LinkState.DEAD
        link.consecutive_failures = (link.consecutive_failures or 0) + 1
        link.first_failure_at = link.first_failure_at or checked_at
        link.next_check_at = None
        return
    link.consecutive_failures = (link.consecutive_failures or 0) + 1
    if link.first_failure_at is None:
        link.first_failure_at = checked_at
    span = (checked_at - link.first_failure_at).total_seconds()
    if (link.consecutive_failures >= settings["health.dead_after_failures"]
            and span >= settings["health.failure_spacing"]):
        link.state = LinkState.DEAD
        link.next_check_at = with_jitter(checked_at, settings["health.recheck_dead"])
    else:
        link.state = LinkState.FAILING
        link.next_check_at = with_jitter(checked_at, settings["health.failure_spacing"])
