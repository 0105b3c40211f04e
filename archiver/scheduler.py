"""APScheduler wiring. The scheduler only decides *when*: each job calls the same functions as
the CLI, and what is due is read from the database at every tick."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from archiver.archive import Archive
from archiver.clock import utcnow
from archiver.discover import discover
from archiver.jobs import WorkKind, check_round, run_due

if TYPE_CHECKING:
    from archiver.queue import Sender

log = logging.getLogger(__name__)


def tick(archive: Archive) -> None:
    """One scheduler tick: capture, then check, whatever is due (and notify of deaths).

    With ``queue.backend = celery`` the due work is handed to ``archiver worker`` processes
    (one batch per host at a time) instead of being run here.
    """
    if archive.settings["queue.backend"] == "celery":
        dispatch_tick(archive)
        return
    try:
        for summary in (run_due(archive, WorkKind.CAPTURE), check_round(archive)):
            if summary.claimed:
                log.info(summary.line())
    finally:
        archive.store.checkpoint()  # with object storage: the tick's records are uploaded


_SENDERS: dict[str, Sender] = {}  # the Celery app of each broker URL, built once


def dispatch_tick(archive: Archive) -> None:
    """Send due captures and checks to the workers; record today's states, notify deaths."""
    from archiver.history import snapshot_state_counts
    from archiver.notify import send_dead_link_notifications
    from archiver.queue import dispatch_due
    from archiver.tasks import make_celery

    broker: str = archive.settings["queue.broker_url"]
    sender = _SENDERS.get(broker)
    if sender is None:
        sender = _SENDERS[broker] = make_celery(archive.settings)
    for kind in (WorkKind.CAPTURE, WorkKind.CHECK):
        summary = dispatch_due(archive, kind, sender)
        if summary.batches:
            log.info(summary.line())
    with archive.db.session() as session:
        snapshot_state_counts(session)
    notice = send_dead_link_notifications(archive)
    if notice.webhook or notice.email:
        log.info(notice.line())


def discover_tick(archive: Archive) -> None:
    """Read every source for new posts."""
    log.info(discover(archive).line())


def history_tick(archive: Archive) -> None:
    """Thin out old checks that only repeat their neighbours (``health.check_history``)."""
    from archiver.history import thin_checks

    removed = thin_checks(archive.db, archive.settings["health.check_history"])
    if removed:
        log.info("thin-checks: %d old checks that repeated their neighbours dropped", removed)


def build_scheduler(archive: Archive, *, blocking: bool) -> BaseScheduler:
    """A scheduler with the discover and tick jobs, both started at once, then at their
    intervals; and the daily thinning of old checks, first ten minutes after it starts."""
    scheduler: BaseScheduler = BlockingScheduler(timezone="UTC") if blocking \
        else BackgroundScheduler(timezone="UTC")
    settings = archive.settings
    common = {"max_instances": 1, "coalesce": True, "next_run_time": utcnow(),
              "misfire_grace_time": None}
    scheduler.add_job(discover_tick, "interval", args=[archive], id="discover",
                      seconds=settings["scheduler.discover_interval"], **common)
    scheduler.add_job(tick, "interval", args=[archive], id="tick",
                      seconds=settings["scheduler.tick_interval"], **common)
    scheduler.add_job(history_tick, "interval", args=[archive], id="history", days=1,
                      **{**common, "next_run_time": utcnow() + timedelta(minutes=10)})
    return scheduler
