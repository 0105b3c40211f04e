"""Rebuild the capture index from the WARC files alone (they are the source of truth)."""

from __future__ import annotations

import logging

from sqlalchemy import delete

from archiver.archive import Archive
from archiver.capture import index_locations
from archiver.errors import StorageError
from archiver.models import Capture
from archiver.warc.records import RecordLocation

log = logging.getLogger(__name__)


def reindex(archive: Archive) -> int:
    """Replace every capture row with rows read from the WARC files; return the count.

    Every readable record of every file is indexed and committed, even when some are not:
    one damaged file does not leave the index empty.  Then, when anything could not be read
    (a file from some byte on, a record without a valid WARC-Date...), StorageError names
    each one.
    """
    total = 0
    problems: list[str] = []
    with archive.db.session() as session:
        session.execute(delete(Capture))
        for name in archive.store.files():
            locations: list[RecordLocation] = []
            try:
                for location in archive.store.iter_locations(name, skipped=problems):
                    locations.append(location)
            except StorageError as exc:
                problems.append(str(exc))
            total += index_locations(session, locations)
            log.info("indexed %s: %d records", name, len(locations))
    if problems:
        for problem in problems:
            log.error("reindex: %s", problem)
        raise StorageError(f"reindex: {total} records indexed, but not everything could be "
                           f"read: {'; '.join(problems)}")
    return total
