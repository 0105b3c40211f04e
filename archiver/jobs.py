"""Runs that the CLI and the scheduler share: claim what is due, then check or capture it.

What is due lives in the database (``links.next_check_at`` / ``next_capture_at``).  A run
claims a bounded batch with a lease, so two runs at once (a scheduler tick and a CLI command)
never take the same link; a run that dies leaves leases that simply expire.  Each job takes a
link ID, reloads the row and returns quietly if it is gone.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from itertools import zip_longest

from sqlalchemy import and_, func, or_, select, update

from archiver.archive import Archive
from archiver.capture import CaptureOutcome, index_locations
from archiver.check import check_url
from archiver.clock import utcnow
from archiver.fingerprint import similarity
from archiver.health import apply_verdict, with_jitter
from archiver.models import Check, Link, link_is_ignored
from archiver.settings import Settings
from archiver.verdicts import Verdict

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]  # (done, total)


class WorkKind(StrEnum):
    """The two kinds of per-link work."""

    CHECK = "check"
    CAPTURE = "capture"


_COLUMNS = {
    WorkKind.CHECK: (Link.next_check_at, Link.check_lease_until, Link.check_lease_owner),
    WorkKind.CAPTURE: (Link.next_capture_at, Link.capture_lease_until, Link.capture_lease_owner),
}


@dataclass
class RunSummary:
    """What one run did, for the one-line summary and the logs."""

    kind: str
    claimed: int = 0
    done: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def line(self) -> str:
        """One-line human summary."""
        parts = ", ".join(f"{count} {name}" for name, count in self.outcomes.most_common())
        rate = self.done / self.seconds if self.seconds else 0.0
        return (f"{self.kind}: {self.done} of {self.claimed} links in {self.seconds:.1f}s "
                f"({rate:.1f}/s){': ' + parts if parts else ''}")


def claim_due(archive: Archive, kind: WorkKind, limit: int, *, everything: bool = False,
              now: datetime | None = None) -> list[int]:
    """Lease up to ``limit`` due links (or any links with ``everything``); return their IDs."""
    due_col, lease_col, owner_col = _COLUMNS[kind]
    now = now or utcnow()
    owner = uuid.uuid4().hex
    lease_until = now + timedelta(seconds=archive.settings["capture.lease"])
    free = or_(lease_col.is_(None), lease_col < now)
    due = due_col.is_not(None) if everything else and_(due_col.is_not(None), due_col <= now)
    with archive.db.session() as session:
        candidates = (select(Link.id).where(due, free, ~link_is_ignored())
                      .order_by(due_col, Link.id).limit(limit).scalar_subquery())
        session.execute(update(Link).where(Link.id.in_(candidates), free)
                        .values({lease_col: lease_until, owner_col: owner})
                        .execution_options(synchronize_session=False))
        ids = list(session.scalars(select(Link.id).where(owner_col == owner)))
    return ids


def _release(link: Link, kind: WorkKind) -> None:
    if kind is WorkKind.CHECK:
        link.check_lease_until, link.check_lease_owner = None, None
    else:
        link.capture_lease_until, link.capture_lease_owner = None, None


def interleave_by_host(archive: Archive, link_ids: Iterable[int]) -> list[int]:
    """Order IDs round-robin across hosts so parallel workers spread over many hosts."""
    ids = list(link_ids)
    if not ids:
        return []
    with archive.db.session() as session:
        rows = session.execute(select(Link.id, Link.host).where(Link.id.in_(ids))).all()
    by_host: dict[str, list[int]] = defaultdict(list)
    for link_id, host in sorted(rows):
        by_host[host].append(link_id)
    ordered: list[int] = []
    for group in zip_longest(*by_host.values()):
        ordered.extend(i for i in group if i is not None)
    return ordered


def _url_of(archive: Archive, link_id: int) -> str | None:
    """The link's URL, read in a short transaction (no lock held while fetching)."""
    with archive.db.session() as session:
        link = session.get(Link, link_id)
        return link.url if link is not None else None


def _previous_validators(archive: Archive, link_id: int) -> dict[str, str] | None:
    with archive.db.session() as session:
        evidence = session.scalar(select(Check.evidence).where(Check.link_id == link_id)
                                  .order_by(Check.checked_at.desc()).limit(1))
    return dict(evidence.get("headers", {})) if evidence else None


def note_fingerprint(link: Link, sketch: str | None, now: datetime, settings: Settings, *,
                     captured: bool) -> None:
    """Record a page's text sketch; flag drift from the first capture and recapture on change.

    A new capture is asked for when the text moved far from the latest capture's, so a page
    that was rewritten is kept as it is now as well as as it was.
    """
    if sketch is None:
        return
    threshold: float = settings["health.drift_threshold"]
    if link.first_fingerprint is None and captured:
        link.first_fingerprint = sketch
    if link.first_fingerprint is not None:
        link.drift = round(1.0 - similarity(link.first_fingerprint, sketch), 3)
    if captured:
        link.last_fingerprint = sketch
    elif link.last_fingerprint is not None and \
            1.0 - similarity(link.last_fingerprint, sketch) > threshold:
        link.next_capture_at = now


def check_link(archive: Archive, link_id: int) -> str | None:
    """Check one link by ID, store the check and the new state; None if the link is gone."""
    url = _url_of(archive, link_id)
    if url is None:
        return None
    outcome = check_url(archive.client(), url, archive.settings, probes=archive.probes(),
                        previous=_previous_validators(archive, link_id))
    checked_at = utcnow()
    with archive.db.session() as session:
        link = session.get(Link, link_id)
        if link is None:
            return None
        session.add(Check(link_id=link_id, checked_at=checked_at, verdict=outcome.verdict,
                          http_status=outcome.http_status, final_url=outcome.final_url,
                          elapsed_ms=round(outcome.elapsed * 1000), error=outcome.error,
                          evidence=outcome.evidence, fingerprint=outcome.sketch,
                          response_key=outcome.response_key))
        link.http_status = outcome.http_status
        link.final_url = outcome.final_url
        verdict = outcome.verdict
        if link.override_response is not None:
            if link.override_response == outcome.response_key:
                verdict = Verdict.OK  # the author said this answer is fine; it still is
            else:
                link.override_response, link.overridden_at = None, None
        apply_verdict(link, verdict, checked_at, archive.settings, outcome.retry_after)
        link.last_verdict = outcome.verdict  # the report shows what the site really said
        note_fingerprint(link, outcome.sketch, checked_at, archive.settings, captured=False)
        _release(link, WorkKind.CHECK)
    log.info("checked %s: %s", url, outcome.verdict, extra={"link_id": link_id})
    return str(outcome.verdict)


def capture_link(archive: Archive, link_id: int) -> str | None:
    """Capture one link by ID (with its requisites) and index it; None if the link is gone."""
    url = _url_of(archive, link_id)
    if url is None:
        return None
    result = archive.capturer().capture(url)
    now = utcnow()
    settings = archive.settings
    with archive.db.session() as session:
        index_locations(session, result.locations)  # the records are on disk (fsynced) now
        link = session.get(Link, link_id)
        if link is None:
            return None
        link.last_capture_at = now
        link.last_capture_outcome = result.outcome
        link.last_capture_error = (f"{result.verdict}: {result.error}" if result.verdict
                                   else result.error)
        retry = result.outcome is CaptureOutcome.FAILED
        link.next_capture_at = with_jitter(now, settings["capture.retry_interval"] if retry
                                           else settings["capture.recapture_interval"])
        if result.ok:
            note_fingerprint(link, result.sketch, now, settings, captured=True)
        _release(link, WorkKind.CAPTURE)
    log.info("captured %s: %s (%d requisites, %d revisits)", url, result.outcome,
             result.requisites, result.revisits, extra={"link_id": link_id})
    return str(result.outcome)


_WORKERS: dict[WorkKind, Callable[[Archive, int], str | None]] = {
    WorkKind.CHECK: check_link,
    WorkKind.CAPTURE: capture_link,
}
_BATCH_SETTING = {WorkKind.CHECK: "health.batch_size", WorkKind.CAPTURE: "capture.batch_size"}


def run_due(archive: Archive, kind: WorkKind, *, everything: bool = False,
            limit: int | None = None, progress: Progress | None = None) -> RunSummary:
    """Claim a batch of due links and work through it in parallel, politely per host."""
    started = time.monotonic()
    batch = limit or archive.settings[_BATCH_SETTING[kind]]
    if everything:
        batch = max(batch, _count_links(archive))
    ids = interleave_by_host(archive, claim_due(archive, kind, batch, everything=everything))
    summary = RunSummary(kind=str(kind), claimed=len(ids))
    work = _WORKERS[kind]
    if progress:
        progress(0, len(ids))
    with ThreadPoolExecutor(max_workers=archive.settings["fetch.concurrency"],
                            thread_name_prefix=str(kind)) as pool:
        for outcome in pool.map(lambda link_id: _safely(work, archive, link_id), ids):
            summary.done += 1
            summary.outcomes[outcome or "gone"] += 1
            if progress:
                progress(summary.done, len(ids))
    summary.seconds = time.monotonic() - started
    return summary


def _safely(work: Callable[[Archive, int], str | None], archive: Archive,
            link_id: int) -> str | None:
    """Run one job; an unexpected error is logged with its link and counted, not raised."""
    try:
        return work(archive, link_id)
    except Exception:
        log.exception("job failed for link %s", link_id, extra={"link_id": link_id})
        return "error"


def _count_links(archive: Archive) -> int:
    with archive.db.session() as session:
        return int(session.scalar(select(func.count(Link.id))) or 0)


def check_round(archive: Archive, *, everything: bool = False,
                progress: Progress | None = None) -> RunSummary:
    """Check what is due, then record today's state counts and tell the author about deaths."""
    from archiver.history import snapshot_state_counts
    from archiver.notify import send_dead_link_notifications

    summary = run_due(archive, WorkKind.CHECK, everything=everything, progress=progress)
    with archive.db.session() as session:
        snapshot_state_counts(session)
    notice = send_dead_link_notifications(archive)
    if notice.webhook or notice.email:
        log.info(notice.line())
    return summary
