"""Soft-404 probe answers kept in the database for ``health.probe_cache``.

A check run's probe cache starts from the answers younger than that, and each new answer is
written as it comes: a later ``archiver check`` (a CI gate runs one per build) or another
worker reuses a site's answer instead of asking the site again.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError

from archiver.check import Probe
from archiver.clock import utcnow
from archiver.db import Database
from archiver.fingerprint import is_current
from archiver.models import SiteProbe

log = logging.getLogger(__name__)


def stored_probes(db: Database, ttl: float) -> list[tuple[str, float, Probe]]:
    """The answers younger than ``ttl`` seconds, as (key, age in seconds, probe)."""
    now = utcnow()
    with db.session() as session:
        rows = session.scalars(select(SiteProbe)
                               .where(SiteProbe.probed_at > now - timedelta(seconds=ttl)))
        # An answer sketched another way cannot be compared with today's pages: ask again.
        return [(row.key, (now - row.probed_at).total_seconds(),
                 Probe(row.url, row.status, row.final_url, row.sketch)) for row in rows
                if row.sketch is None or is_current(row.sketch)]


def store_probe(db: Database, ttl: float, key: str, probe: Probe) -> None:
    """Keep ``probe`` under ``key`` in place of an older answer, and drop expired answers.

    A failure to write is logged, not raised: the check that probed goes on, and the answer
    is still cached in this process.
    """
    now = utcnow()
    try:
        with db.session() as session:
            session.execute(delete(SiteProbe).where(
                (SiteProbe.key == key) | (SiteProbe.probed_at <= now - timedelta(seconds=ttl))))
            session.add(SiteProbe(key=key, probed_at=now, url=probe.url, status=probe.status,
                                  final_url=probe.final_url, sketch=probe.sketch))
    except SQLAlchemyError as exc:  # e.g. another worker stored the same site at this moment
        log.warning("soft-404 probe of %s not stored: %s", key, exc)
