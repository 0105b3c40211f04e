"""Operational figures for Prometheus, read from the database and the WARC folder.

They are computed at scrape time from the shared state, so they are right whichever process
(web, scheduler, workers) did the work.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy import case, func, or_, select

from archiver.archive import Archive
from archiver.clock import utcnow
from archiver.errors import StorageError
from archiver.models import Capture, Check, Link, LinkState

# Upper bounds (seconds) of the fetch latency histogram.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LATENCY_WINDOW = timedelta(days=1)


class ArchiveCollector:
    """A Prometheus collector over one archive."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family."""
        now = utcnow()
        with self.archive.db.session() as session:
            states = dict(session.execute(select(Link.state, func.count(Link.id))
                                          .group_by(Link.state)).all())
            verdicts = session.execute(select(Check.verdict, func.count(Check.id))
                                       .where(Check.checked_at >= now - LATENCY_WINDOW)
                                       .group_by(Check.verdict)).all()
            records = session.execute(select(Capture.record_type, func.count(Capture.id))
                                      .group_by(Capture.record_type)).all()
            outcomes = session.execute(
                select(Link.last_capture_outcome, func.count(Link.id))
                .where(Link.last_capture_outcome.is_not(None))
                .group_by(Link.last_capture_outcome)).all()
            due_checks = session.scalar(select(func.count(Link.id)).where(
                Link.next_check_at <= now,
                or_(Link.check_lease_until.is_(None), Link.check_lease_until < now)))
            due_captures = session.scalar(select(func.count(Link.id)).where(
                Link.next_capture_at <= now,
                or_(Link.capture_lease_until.is_(None), Link.capture_lease_until < now)))
            latency = self._latency(session, now)

        links = GaugeMetricFamily("archiver_links", "Links by health state", labels=["state"])
        for state in LinkState:
            links.add_metric([state.value], states.get(state.value, 0))
        yield links
        # The last day's, not a counter: old checks are thinned (health.check_history), and
        # counting every check ever made would scan the largest table at each scrape.
        checks = GaugeMetricFamily("archiver_checks_last_day", "Checks in the last 24 hours "
                                   "by verdict", labels=["verdict"])
        for verdict, count in verdicts:
            checks.add_metric([verdict], count)
        yield checks
        captures = CounterMetricFamily("archiver_records", "Indexed WARC records by type",
                                       labels=["type"])
        for record_type, count in records:
            captures.add_metric([record_type], count)
        yield captures
        last = GaugeMetricFamily("archiver_last_capture_outcome",
                                 "Links by the outcome of their last capture",
                                 labels=["outcome"])
        for outcome, count in outcomes:
            last.add_metric([str(outcome)], count)
        yield last
        queue = GaugeMetricFamily("archiver_queue_depth", "Links due now, not claimed",
                                  labels=["kind"])
        queue.add_metric(["check"], due_checks or 0)
        queue.add_metric(["capture"], due_captures or 0)
        yield queue
        yield from self._storage()
        yield latency

    def _latency(self, session: Any, now: Any) -> HistogramMetricFamily:
        """Check durations over the last day, as a histogram."""
        window = Check.checked_at >= now - LATENCY_WINDOW
        columns = [func.sum(case((Check.elapsed_ms <= bound * 1000, 1), else_=0))
                   for bound in LATENCY_BUCKETS]
        row = session.execute(select(func.count(Check.id),
                                     func.coalesce(func.sum(Check.elapsed_ms), 0), *columns)
                              .where(window)).one()
        total, total_ms, *cumulative = row
        buckets = [(str(bound), int(count or 0)) for bound, count in
                   zip(LATENCY_BUCKETS, cumulative, strict=True)]
        buckets.append(("+Inf", int(total or 0)))
        family = HistogramMetricFamily("archiver_fetch_seconds",
                                       "Duration of link checks over the last day")
        family.add_metric([], buckets, sum_value=(total_ms or 0) / 1000)
        return family

    def _storage(self) -> Iterator[Metric]:
        store = self.archive.store
        sizes = store.file_sizes()
        names, size = list(sizes), sum(sizes.values())
        files = GaugeMetricFamily("archiver_warc_files", "WARC files in the store")
        files.add_metric([], len(names))
        yield files
        stored = GaugeMetricFamily("archiver_warc_bytes", "Bytes of WARC files in the store")
        stored.add_metric([], size)
        yield stored


def health(archive: Archive) -> dict[str, str]:
    """Whether the database and the WARC folder can be reached ("ok" or the error)."""
    status: dict[str, str] = {}
    try:
        with archive.db.session() as session:
            session.execute(select(1))
        status["database"] = "ok"
    except Exception as exc:
        status["database"] = f"error: {type(exc).__name__}"
    folder = archive.store.directory
    status["storage"] = "ok" if folder.is_dir() and _writable(folder) else \
        f"error: {folder} is not a writable folder"
    if archive.store.remote is not None:
        try:
            archive.store.remote.check()
            status["object_storage"] = "ok"
        except StorageError as exc:
            status["object_storage"] = f"error: {exc}"
    return status


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK)
