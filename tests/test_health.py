"""States from verdicts: dead only after enough failures spread over enough time."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from archiver.health import apply_verdict
from archiver.models import Link, LinkState
from archiver.verdicts import Verdict
from tests.conftest import make_settings

T0 = datetime(2026, 1, 1, 12, 0, 0)


def fresh() -> Link:
    return Link(url="https://example.com/a", url_key="com,example)/a", host="example.com",
                consecutive_failures=0)


@pytest.fixture
def spaced(tmp_path: Path):  # type: ignore[no-untyped-def]
    return make_settings(tmp_path, health__failure_spacing="3d")


def test_three_failures_within_a_day_are_failing_not_dead(spaced) -> None:  # type: ignore[no-untyped-def]
    link = fresh()
    for hours in (0, 1, 2):
        apply_verdict(link, Verdict.NOT_FOUND, T0 + timedelta(hours=hours), spaced)
    assert link.state == LinkState.FAILING
    assert link.consecutive_failures == 3


def test_three_failures_spanning_three_days_are_dead(spaced) -> None:  # type: ignore[no-untyped-def]
    link = fresh()
    for days in (0, 2, 3):
        apply_verdict(link, Verdict.NOT_FOUND, T0 + timedelta(days=days), spaced)
    assert link.state == LinkState.DEAD
    assert link.first_failure_at == T0


def test_two_failures_over_a_month_are_not_enough(spaced) -> None:  # type: ignore[no-untyped-def]
    link = fresh()
    for days in (0, 30):
        apply_verdict(link, Verdict.GONE, T0 + timedelta(days=days), spaced)
    assert link.state == LinkState.FAILING


def test_a_success_resets_everything(spaced) -> None:  # type: ignore[no-untyped-def]
    link = fresh()
    for days in (0, 2):
        apply_verdict(link, Verdict.TIMEOUT, T0 + timedelta(days=days), spaced)
    apply_verdict(link, Verdict.OK, T0 + timedelta(days=3), spaced)
    assert (link.state, link.consecutive_failures, link.first_failure_at) == (
        LinkState.ALIVE, 0, None)
    assert link.last_alive_at == T0 + timedelta(days=3)
    apply_verdict(link, Verdict.TIMEOUT, T0 + timedelta(days=4), spaced)
    assert link.state == LinkState.FAILING and link.consecutive_failures == 1


@pytest.mark.parametrize("verdict", [Verdict.BLOCKED, Verdict.RATE_LIMITED])
def test_blocked_and_rate_limited_never_count(spaced, verdict: Verdict) -> None:  # type: ignore[no-untyped-def]
    link = fresh()
    for days in range(10):
        apply_verdict(link, verdict, T0 + timedelta(days=days), spaced)
    assert link.state == LinkState.UNKNOWN
    assert link.consecutive_failures == 0


def test_blocked_between_failures_does_not_reset_or_add(spaced) -> None:  # type: ignore[no-untyped-def]
    link = fresh()
    apply_verdict(link, Verdict.NOT_FOUND, T0, spaced)
    apply_verdict(link, Verdict.BLOCKED, T0 + timedelta(days=1), spaced)
    assert link.consecutive_failures == 1


def test_next_check_times(spaced) -> None:  # type: ignore[no-untyped-def]
    link = fresh()
    apply_verdict(link, Verdict.OK, T0, spaced)
    assert link.next_check_at is not None
    assert timedelta(days=6) < link.next_check_at - T0 < timedelta(days=8)  # weekly, jittered
    apply_verdict(link, Verdict.NOT_FOUND, T0, spaced)
    assert timedelta(days=2.6) < link.next_check_at - T0 < timedelta(days=3.4)
    for days in (3, 6):
        apply_verdict(link, Verdict.NOT_FOUND, T0 + timedelta(days=days), spaced)
    assert link.state == LinkState.DEAD
    assert timedelta(days=26) < link.next_check_at - (T0 + timedelta(days=6)) < timedelta(days=34)


def test_invalid_urls_are_dead_at_once_and_never_rechecked(spaced) -> None:  # type: ignore[no-untyped-def]
    link = fresh()
    apply_verdict(link, Verdict.INVALID_URL, T0, spaced)
    assert link.state == LinkState.DEAD
    assert link.next_check_at is None
