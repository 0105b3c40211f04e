"""Runs that the CLI and the scheduler share: claim what is due, then check or capture it.

What is due lives in the database (``links.next_check_at`` / ``next_capture_at``).  A run
claims a bounded batch with a lease, so two runs at once (a scheduler tick and a CLI command)
never take the same link; a run that dies leaves leases that simply expire.  Each job takes a
link ID, reloads the row and returns quietly if it is gone.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial
from itertools import zip_longest
from queue import SimpleQueue
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, insert, or_, select, update

from archiver.archive import Archive
from archiver.capture import (
    RETRIED_SOON,
    CaptureOutcome,
    CaptureResult,
    KnownSketch,
    index_new_locations,
)
from archiver.check import SUCCESS, VALIDATORS, CheckOutcome, check_url
from archiver.clock import utcnow
from archiver.errors import WriteError
from archiver.fingerprint import is_current, similarity
from archiver.health import apply_verdict, with_jitter
from archiver.logs import RUN_ID
from archiver.models import Check, Link, link_is_ignored
from archiver.net.client import Stopped
from archiver.net.politeness import HostQueue
from archiver.settings import Settings
from archiver.urls import host_of
from archiver.verdicts import Verdict

log = logging.getLogger(__name__)
WRITE_BATCH = 50  # finished checks written per transaction
Progress = Callable[[int, int], None]  # (done, total)


class WorkKind(StrEnum):
    """The two kinds of per-link work."""

    CHECK = "check"
    CAPTURE = "capture"


# Per kind of work: (when it is due, until when it is leased, who holds the lease).
LEASE_COLUMNS = {
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


def claim_due(archive: Archive, kind: WorkKind, limit: int | None, *,
              everything: bool = False, now: datetime | None = None,
              owner: str | None = None) -> list[int]:
    """Lease up to ``limit`` (None: all) due links (or any links with ``everything``) to
    ``owner`` (a new one by default); return their IDs."""
    due_col, lease_col, owner_col = LEASE_COLUMNS[kind]
    now = now or utcnow()
    owner = owner or uuid.uuid4().hex
    lease_until = now + timedelta(seconds=archive.settings["capture.lease"])
    free = or_(lease_col.is_(None), lease_col < now)
    due = due_col.is_not(None) if everything else and_(due_col.is_not(None), due_col <= now)
    with archive.db.session() as session:
        candidates = (select(Link.id).where(due, free, ~link_is_ignored())
                      .order_by(due_col, Link.id).limit(limit))
        claim = (update(Link).values({lease_col: lease_until, owner_col: owner})
                 .execution_options(synchronize_session=False))
        if session.get_bind().dialect.name == "postgresql":
            # Lock the candidates, passing over rows another claim has locked: claims at the
            # same moment neither wait for each other nor come back short while work is left.
            locked = candidates.with_for_update(skip_locked=True).scalar_subquery()
            return sorted(session.scalars(claim.where(Link.id.in_(locked), free)
                                          .returning(Link.id)))
        session.execute(claim.where(Link.id.in_(candidates.scalar_subquery()), free))
        ids = list(session.scalars(select(Link.id).where(owner_col == owner)))
    return ids


def renew_leases(archive: Archive, kind: WorkKind, owner: str,
                 ids: list[int] | None = None) -> None:
    """Push ``owner``'s unexpired leases (on ``ids``, or all of them) one lease ahead."""
    _, lease_col, owner_col = LEASE_COLUMNS[kind]
    now = utcnow()
    renew = (update(Link).where(owner_col == owner, lease_col > now)
             .values({lease_col: now + timedelta(seconds=archive.settings["capture.lease"])})
             .execution_options(synchronize_session=False))
    with archive.db.session() as session:
        if ids is None:
            session.execute(renew)
        for start in range(0, len(ids or ()), 500):  # within every database's parameter limit
            session.execute(renew.where(Link.id.in_((ids or [])[start:start + 500])))


@contextmanager
def leases_kept(archive: Archive, kind: WorkKind, owner: str) -> Iterator[None]:
    """Renew ``owner``'s leases every third of a lease while the block runs: a run that
    outlasts one lease (a large ``--all``) is not doubled by the next run's claim."""
    done = threading.Event()
    period = max(archive.settings["capture.lease"] / 3, 0.05)

    def keep() -> None:
        while not done.wait(period):
            try:
                renew_leases(archive, kind, owner)
            except Exception:  # the next turn tries again; the run itself goes on
                log.exception("could not renew the leases of this %s run", kind)

    keeper = threading.Thread(target=contextvars.copy_context().run, args=(keep,),
                              name=f"lease-{kind}", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        done.set()
        keeper.join()


def release_claims(archive: Archive, kind: WorkKind, owner: str, ids: list[int]) -> int:
    """Give back the leases ``owner`` still holds on ``ids`` (the links a stopped run did not
    finish); return how many."""
    _, lease_col, owner_col = LEASE_COLUMNS[kind]
    released = 0
    with archive.db.session() as session:
        for start in range(0, len(ids), 500):  # within every database's limit on parameters
            result = session.execute(
                update(Link).where(Link.id.in_(ids[start:start + 500]), owner_col == owner)
                .values({lease_col: None, owner_col: None})
                .execution_options(synchronize_session=False))
            released += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return released


def _release(link: Link, kind: WorkKind) -> None:
    if kind is WorkKind.CHECK:
        link.check_lease_until, link.check_lease_owner = None, None
    else:
        link.capture_lease_until, link.capture_lease_owner = None, None


def interleave_by_host(links: Iterable[DueLink]) -> list[DueLink]:
    """Order links round-robin across hosts (by ID within a host) so parallel workers spread
    over many hosts."""
    by_host: dict[str, list[DueLink]] = defaultdict(list)
    for link in sorted(links, key=lambda due: due.id):
        by_host[host_of(link.url)].append(link)
    ordered: list[DueLink] = []
    for group in zip_longest(*by_host.values()):
        ordered.extend(link for link in group if link is not None)
    return ordered


def validators_of(headers: dict[str, str]) -> dict[str, str] | None:
    """The validator headers (ETag, Last-Modified, Content-Length) among ``headers``."""
    found = {name: headers[name] for name in VALIDATORS if headers.get(name)}
    return found or None


def note_fingerprint(link: Link, sketch: str | None, now: datetime, settings: Settings, *,
                     captured: bool) -> None:
    """Record a page's text sketch; flag drift from the first capture and recapture on change.

    A new capture is asked for when the text moved far from the latest capture's, so a page
    that was rewritten is kept as it is now as well as as it was.  A sketch made the old way
    cannot be compared: the drift stays as it was until a capture makes the first
    fingerprint again (``archiver/baseline.py``), and the latest one is replaced by the next
    capture's.
    """
    if sketch is None:
        return
    threshold: float = settings["health.drift_threshold"]
    if link.first_fingerprint is None and captured:
        link.first_fingerprint = sketch
    if link.first_fingerprint is not None:
        alike = similarity(link.first_fingerprint, sketch)
        if alike is not None:
            link.drift = round(1.0 - alike, 3)
    if captured:
        link.last_fingerprint = sketch
    elif link.last_fingerprint is not None:
        alike = similarity(link.last_fingerprint, sketch)
        if alike is not None and 1.0 - alike > threshold:
            link.next_capture_at = now


@dataclass(frozen=True)
class DueLink:
    """What a check or capture needs to know before going to the network."""

    id: int
    url: str
    validators: dict[str, str] | None
    sketch: KnownSketch | None = None  # the page's last sketch and the payload it was made from
    old_baseline: bool = False  # its first fingerprint was made another way: make it again
    first_sketch: str | None = None  # its first fingerprint, when made the current way


def load_due(archive: Archive, link_ids: list[int]) -> list[DueLink]:
    """The URLs, last validators and last sketches of ``link_ids``, in one query, in the
    given order."""
    if not link_ids:
        return []
    with archive.db.session() as session:
        rows = {row.id: row for row in session.execute(
            select(Link.id, Link.url, Link.validators, Link.sketched_digest,
                   Link.last_fingerprint, Link.first_fingerprint)
            .where(Link.id.in_(link_ids))).all()}
    return [DueLink(i, row.url, row.validators,
                    KnownSketch(row.sketched_digest, row.last_fingerprint)
                    if row.sketched_digest and is_current(row.last_fingerprint) else None,
                    row.first_fingerprint is not None and not is_current(row.first_fingerprint),
                    row.first_fingerprint if is_current(row.first_fingerprint) else None)
            for i in link_ids if (row := rows.get(i)) is not None]


def probe_link(archive: Archive, due: DueLink) -> CheckOutcome:
    """The network half of a check (no database session is held meanwhile)."""
    return check_url(archive.client(), due.url, archive.settings, probes=archive.probes(),
                     previous=due.validators, baseline=due.first_sketch)


# The link columns a check may change: read before it is applied, written when changed.
_CHECKED_COLUMNS = (
    "http_status", "final_url", "override_response", "overridden_at", "state", "last_verdict",
    "last_checked_at", "consecutive_failures", "first_failure_at", "last_alive_at",
    "dead_notified_at", "next_check_at", "validators", "first_fingerprint", "last_fingerprint",
    "drift", "next_capture_at", "check_lease_until", "check_lease_owner",
)


def _changes(link_id: int, names: tuple[str, ...], values: Sequence[Any],
             change: Callable[[Link], None]) -> dict[str, Any]:
    """The columns ``change`` alters on a link whose ``names`` columns hold ``values``: it is
    applied to a detached ``Link`` built from them, and only what differs is written back, as
    the ORM would (no unit of work)."""
    link = Link(id=link_id, **dict(zip(names, values, strict=True)))
    change(link)
    return {name: getattr(link, name) for name, old in zip(names, values, strict=True)
            if getattr(link, name) != old}


def check_row(link_id: int, outcome: CheckOutcome, checked_at: datetime) -> dict[str, Any]:
    """The ``checks`` row of one finished check."""
    return {"link_id": link_id, "checked_at": checked_at, "verdict": str(outcome.verdict),
            "http_status": outcome.http_status, "final_url": outcome.final_url,
            "elapsed_ms": round(outcome.elapsed * 1000), "error": outcome.error,
            "evidence": outcome.evidence, "fingerprint": outcome.sketch,
            "response_key": outcome.response_key}


def apply_check(link: Link, outcome: CheckOutcome, checked_at: datetime,
                settings: Settings) -> None:
    """A finished check's effect on its link: the overrides, the state, the drift, the lease."""
    link.http_status = outcome.http_status
    link.final_url = outcome.final_url
    verdict = outcome.verdict
    alive_at = link.last_alive_at
    if link.override_response is not None:
        if outcome.same_response(link.override_response):
            verdict = Verdict.OK  # the author said this answer is fine; it still is
            link.override_response = outcome.response_key  # an old-format key, renewed
        else:
            link.override_response, link.overridden_at = None, None
    apply_verdict(link, verdict, checked_at, settings, outcome.retry_after)
    if outcome.verdict not in SUCCESS:
        link.last_alive_at = alive_at  # an override makes the link count as alive, not answer
    link.last_verdict = outcome.verdict  # the report shows what the site really said
    if outcome.verdict in SUCCESS:
        link.validators = validators_of(outcome.evidence.get("headers", {}))
    note_fingerprint(link, outcome.sketch, checked_at, settings, captured=False)
    _release(link, WorkKind.CHECK)


def check_link(archive: Archive, link_id: int) -> str | None:
    """Check one link by ID, store the check and the new state; None if the link is gone."""
    due = load_due(archive, [link_id])
    if not due:
        return None
    outcome = probe_link(archive, due[0])
    if not store_checks(archive, [(due[0], outcome)]):
        return None
    return str(outcome.verdict)


def store_checks(archive: Archive, results: list[tuple[DueLink, CheckOutcome]]) -> int:
    """Write finished checks and their links' new state in one transaction; return how many
    links were still there.

    The links are read as plain rows and changed as detached ``Link`` objects, then written
    with one INSERT and one UPDATE per set of changed columns (executemany): no unit of work.
    Only the columns a check changed are written, as the ORM would.
    """
    if not results:
        return 0
    checked_at = utcnow()
    columns = [getattr(Link, name) for name in _CHECKED_COLUMNS]
    with archive.db.session() as session:
        before = {row[0]: row[1:] for row in session.execute(
            select(Link.id, *columns).where(Link.id.in_([due.id for due, _ in results])))}
        checks: list[dict[str, Any]] = []
        updates: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for due, outcome in results:
            values = before.get(due.id)
            if values is None:
                continue  # deleted while it was being checked
            changed = _changes(due.id, _CHECKED_COLUMNS, values, partial(
                apply_check, outcome=outcome, checked_at=checked_at, settings=archive.settings))
            updates[tuple(changed)].append({"id": due.id, **changed})
            checks.append(check_row(due.id, outcome, checked_at))
            log.info("checked %s: %s", due.url, outcome.verdict, extra={"link_id": due.id})
        if checks:
            session.execute(insert(Check), checks)
        for names, rows in updates.items():
            if names:
                session.execute(update(Link), rows)
    return len(checks)


# The link columns a capture may change: read before it is applied, written when changed.
_CAPTURED_COLUMNS = (
    "last_capture_at", "last_capture_outcome", "last_capture_error", "next_capture_at",
    "first_fingerprint", "last_fingerprint", "sketched_digest", "drift", "validators",
    "capture_lease_until", "capture_lease_owner",
)
_LINKS = cast(Table, Link.__table__)
_CAPTURED_ROW = (select(*(_LINKS.c[name] for name in _CAPTURED_COLUMNS))
                 .where(_LINKS.c.id == bindparam("id")))


def apply_capture(link: Link, result: CaptureResult, captured_at: datetime,
                  settings: Settings, baseline: str | None = None) -> None:
    """A finished capture's effect on its link: the outcome, the next capture, the page's
    sketch and validators, the lease.  ``baseline`` is the first fingerprint made again the
    current way, when the stored one was made another way."""
    if baseline is not None:
        link.first_fingerprint = baseline
    # a requisite's robots.txt retried once in a row: what the last capture said before it
    retry_soon = result.retry_soon and link.last_capture_error != RETRIED_SOON
    link.last_capture_at = captured_at
    link.last_capture_outcome = result.outcome
    link.last_capture_error = (f"{result.verdict}: {result.error}" if result.verdict
                               else result.error or (RETRIED_SOON if retry_soon else None))
    retry = result.outcome is CaptureOutcome.FAILED or retry_soon
    link.next_capture_at = with_jitter(captured_at, settings["capture.retry_interval"] if retry
                                       else settings["capture.recapture_interval"])
    if result.ok:
        note_fingerprint(link, result.sketch, captured_at, settings, captured=True)
        if result.sketch is not None:
            link.sketched_digest = result.sketched_digest
        link.validators = result.validators
    _release(link, WorkKind.CAPTURE)


def capture_link(archive: Archive, link_id: int, due: DueLink | None = None) -> str | None:
    """Capture one link by ID (with its requisites) and index it; None if the link is gone.
    ``due`` is what the caller has read of the link already (a run reads them all in one
    query).

    The index rows and the link's new state are written in one transaction, the link as a
    plain row changed through a detached ``Link`` (as ``store_checks`` does): no unit of work.
    """
    if archive.stopping.is_set():
        return "stopped"  # not begun before the stop: run_due gives its lease back
    if due is None:
        found = load_due(archive, [link_id])
        if not found:
            return None
        due = found[0]
    url = due.url
    started = utcnow()
    try:
        result = archive.capturer().capture(url, known=due.sketch, stop=archive.stopping)
    except Stopped:
        return "stopped"  # still waiting for its host's turn: given back like one not begun
    baseline = None
    if result.sketch is not None and due.old_baseline:  # read before the write transaction
        from archiver.baseline import first_page_sketch

        baseline = first_page_sketch(archive.db, archive.store, url, started,
                                     archive.settings["fetch.max_body_bytes"])
    now = utcnow()
    try:
        outcome = _index_capture(archive, link_id, result, now, baseline)
    except BaseException:
        archive.capturer().abandon(result)
        raise
    if outcome is None:
        return None
    log.info("captured %s: %s (%d requisites, %d revisits)", url, outcome,
             result.requisites, result.revisits, extra={"link_id": link_id})
    return outcome


def _index_capture(archive: Archive, link_id: int, result: CaptureResult, now: datetime,
                   baseline: str | None) -> str | None:
    """Index a capture's records and apply it to its link, in one transaction; None if the
    link is gone."""
    with archive.db.session() as session:
        archive.store.sync()  # the records are on disk before their index rows exist
        index_new_locations(session, result.locations)
        before = session.execute(_CAPTURED_ROW, {"id": link_id}).first()
        if before is None:
            return None
        if is_current(before.first_fingerprint):
            baseline = None  # made meanwhile by another capture
        changed = _changes(link_id, _CAPTURED_COLUMNS, before, partial(
            apply_capture, result=result, captured_at=now, settings=archive.settings,
            baseline=baseline))
        if changed:  # Core, not the ORM bulk update: 0.5 against 0.9 ms of CPU with the commit
            session.execute(update(_LINKS).where(_LINKS.c.id == link_id).values(changed))
    return result.summary()


_BATCH_SETTING = {WorkKind.CHECK: "health.batch_size", WorkKind.CAPTURE: "capture.batch_size"}


def run_due(archive: Archive, kind: WorkKind, *, everything: bool = False,
            limit: int | None = None, progress: Progress | None = None) -> RunSummary:
    """Claim a batch of due links and work through it in parallel, politely per host.

    The claimed links are read in one query. Checks go to the network in parallel and are
    written in transactions of ``WRITE_BATCH``; captures, which write WARC records, run one job
    per link.
    """
    started = time.monotonic()
    run_token = RUN_ID.set(uuid.uuid4().hex[:12])  # every log line of this run carries it
    batch = None if everything else limit or archive.settings[_BATCH_SETTING[kind]]
    owner = uuid.uuid4().hex
    ids = (claim_due(archive, kind, batch, everything=everything, owner=owner)
           if not archive.stopping.is_set() else [])
    summary = RunSummary(kind=str(kind), claimed=len(ids))
    try:
        with leases_kept(archive, kind, owner):
            _work_through(archive, kind, ids, summary, progress)
    finally:
        # A finished job gives its lease back itself; what a stop (or a crash of the run) left
        # unbegun is given back here, so that the next run takes it at once. A job that failed
        # keeps its lease until it lapses: a back-off, so a link that always fails is not
        # tried again at every tick.
        if summary.done < len(ids) or summary.outcomes["stopped"] or summary.outcomes["lost"]:
            release_claims(archive, kind, owner, ids)
    summary.seconds = time.monotonic() - started
    RUN_ID.reset(run_token)
    return summary


def _work_through(archive: Archive, kind: WorkKind, ids: list[int], summary: RunSummary,
                  progress: Progress | None) -> None:
    """Run the jobs of the claimed ``ids``, counting their outcomes into ``summary``."""
    if progress:
        progress(0, len(ids))

    def count(outcome: str | None) -> None:
        summary.done += 1
        summary.outcomes[outcome or "gone"] += 1
        if progress:
            progress(summary.done, len(ids))

    due = load_due(archive, ids)  # every link in one query, not one session each
    for _gone in range(len(ids) - len(due)):
        count(None)
    if kind is WorkKind.CAPTURE:
        from archiver.capture_pool import capture_in_processes, process_count

        processes = process_count(archive.settings, len(due))
        if processes > 1:
            capture_in_processes(archive, due, processes, count)
        else:
            capture_all(archive, due, count)
        return
    with ThreadPoolExecutor(max_workers=archive.settings["fetch.concurrency"],
                            thread_name_prefix=str(kind)) as pool:
        _run_checks(archive, due, pool, count)


def capture_all(archive: Archive, due: list[DueLink],
                count: Callable[[str | None], None]) -> None:
    """Capture ``due`` with ``fetch.concurrency`` threads, counting each outcome.

    Once a WARC record cannot be written (a full disk), the links not begun are left (counted
    ``stopped``, given back to the next run) instead of each being fetched only to fail.
    """
    unwritable = threading.Event()

    def capture(run_archive: Archive, link_id: int, due: DueLink) -> str | None:
        if unwritable.is_set():
            return "stopped"
        try:
            return capture_link(run_archive, link_id, due)
        except WriteError:
            if not unwritable.is_set():
                unwritable.set()
                log.error("the WARC store cannot be written: the links not begun are left "
                          "for the next run")
            raise

    with ThreadPoolExecutor(max_workers=archive.settings["fetch.concurrency"],
                            thread_name_prefix="capture") as pool:
        # The pool takes jobs in order, so hosts take turns.
        jobs = [pool.submit(contextvars.copy_context().run, _safely,
                            partial(capture, due=link), archive, link.id)
                for link in interleave_by_host(due)]
        for job in jobs:
            count(job.result())


def _run_checks(archive: Archive, due: list[DueLink], pool: ThreadPoolExecutor,
                count: Callable[[str | None], None]) -> None:
    """Check ``due`` with the pool's workers, each taking the next link of a host that has a
    free slot, and write the results from this thread in transactions of ``WRITE_BATCH``."""
    work = HostQueue(((host_of(d.url), d) for d in due),
                     archive.settings["fetch.per_host_concurrency"], archive.stopping)
    finished: SimpleQueue[tuple[DueLink, CheckOutcome | None] | None] = SimpleQueue()

    def lane() -> None:
        host: str | None = None
        try:
            while (taken := work.take(host)) is not None:
                host, link = taken
                outcome: CheckOutcome | None = None
                try:
                    outcome = probe_link(archive, link)
                except Exception:
                    log.exception("check failed for link %s", link.id,
                                  extra={"link_id": link.id})
                finally:
                    work.done(host)
                finished.put((link, outcome))
        finally:
            finished.put(None)  # this lane is finished

    lanes = [pool.submit(contextvars.copy_context().run, lane)
             for _ in range(min(len(due), archive.settings["fetch.concurrency"]))]
    pending: list[tuple[DueLink, CheckOutcome]] = []
    running = len(lanes)
    while running:
        result = finished.get()
        if archive.stopping.is_set():
            for _stopped in range(work.drop()):  # checks not begun: run_due gives them back
                count("stopped")
        if result is None:
            running -= 1
            continue
        link, outcome = result
        if outcome is None:
            count("error")
            continue
        pending.append((link, outcome))
        count(str(outcome.verdict))
        if len(pending) >= WRITE_BATCH:
            store_checks(archive, pending)
            pending = []
    store_checks(archive, pending)
    for _stopped in range(work.drop()):  # the lanes stopped before this thread looked
        count("stopped")
    for finished_lane in lanes:
        finished_lane.result()  # a lane's own failure (not a check's) is raised here


def _safely(work: Callable[[Archive, int], str | None], archive: Archive,
            link_id: int) -> str | None:
    """Run one job; an unexpected error is logged with its link and counted, not raised."""
    try:
        return work(archive, link_id)
    except Exception:
        log.exception("job failed for link %s", link_id, extra={"link_id": link_id})
        return "error"


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
