"""Rebuild the capture index from the WARC files alone (they are the source of truth)."""

from __future__ import annotations

import logging

from sqlalchemy import delete

from archiver.archive import Archive
from archiver.capture import index_locations
from archiver.models import Capture

log = logging.getLogger(__name__)


def reindex(archive: Archive) -> int:
    """Replace every capture row with rows read from the WARC files; return the count."""
    total = 0
    with archive.db.session() as session:
        session.execute(delete(Capture))
        for name in archive.store.files():
            locations = list(archive.store.iter_locations(name))
            total += index_locations(session, locations)
            log.info("indexed %s: %d records", name, len(locations))
    return total
