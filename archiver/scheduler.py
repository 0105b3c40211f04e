"""APScheduler wiring. The scheduler only decides *when*: each job calls the same functions as
the CLI, and what is due is read from the database at every tick."""

from __future__ import annotations

import logging

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from archiver.archive import Archive
from archiver.clock import utcnow
from archiver.discover import discover
from archiver.jobs import WorkKind, check_round, run_due

log = logging.getLogger(__name__)


def tick(archive: Archive) -> None:
    """One scheduler tick: capture, then check, whatever is due (and notify of deaths)."""
    for summary in (run_due(archive, WorkKind.CAPTURE), check_round(archive)):
        if summary.claimed:
            log.info(summary.line())


def discover_tick(archive: Archive) -> None:
    """Read every source for new posts."""
    log.info(discover(archive).line())


def build_scheduler(archive: Archive, *, blocking: bool) -> BaseScheduler:
    """A scheduler with the discover and tick jobs; both start at once, then at intervals."""
    scheduler: BaseScheduler = BlockingScheduler(timezone="UTC") if blocking \
        else BackgroundScheduler(timezone="UTC")
    settings = archive.settings
    common = {"max_instances": 1, "coalesce": True, "next_run_time": utcnow(),
              "misfire_grace_time": None}
    scheduler.add_job(discover_tick, "interval", args=[archive], id="discover",
                      seconds=settings["scheduler.discover_interval"], **common)
    scheduler.add_job(tick, "interval", args=[archive], id="tick",
                      seconds=settings["scheduler.tick_interval"], **common)
    return scheduler
