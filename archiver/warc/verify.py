"""Check the archive against itself: every index row against the bytes it points at, and every
WARC file from its first byte to its last.

For each capture row the bytes at (offset, length) must be exactly one whole gzip member (or,
in an uncompressed file, exactly one record) whose WARC-Record-ID, WARC-Target-URI, WARC-Type
and WARC-Payload-Digest are the row's, and whose block and payload digests verify.  Records are
read as streams (``archiver.warc.reader``), so a record of any size is checked in bounded
memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select

from archiver.archive import Archive
from archiver.errors import StorageError
from archiver.models import Capture
from archiver.warc.reader import RECORD_TRAILER, ParsedRecord, ScanError, read_exact, scan_warc
from archiver.warc.store import WarcStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the archive: the file, the byte offset, and what is wrong."""

    warc_file: str
    offset: int
    message: str

    def line(self) -> str:
        """One line for people and scripts: ``file@offset: message``."""
        return f"{self.warc_file}@{self.offset}: {self.message}"


def digest_problems(record: ParsedRecord) -> list[str]:
    """What is wrong with a record's block and payload digests (nothing when they verify).
    A digest in an algorithm that cannot be computed is not a problem, as at import: it is
    logged as not checked."""
    for note in record.digests.unchecked:
        log.warning("%s (%s)", note, record.header("WARC-Target-URI") or record.rec_type)
    return record.digests.mismatches


# -- verifying the archive -----------------------------------------------------------------

def read_indexed(store: WarcStore, capture: Capture, *, check: bool = True) -> \
        tuple[ParsedRecord, int]:
    """The record a capture row points at, read as a stream, and its whole length: its gzip
    member, or in an uncompressed file the record with the CRLF CRLF trailer that warcio's
    record lengths leave out.  StorageError unless the row's bytes hold exactly that record."""
    if capture.warc_file.endswith(".gz"):
        with store.open_range(capture.warc_file, capture.offset, capture.length) as source:
            return read_exact(source, gzipped=True, check=check)
    # Up to the trailer past the row's length: a range past the file's end just reads less.
    with store.open_range(capture.warc_file, capture.offset,
                          capture.length + len(RECORD_TRAILER)) as source:
        record, length = read_exact(source, gzipped=False, check=check)
    if length < capture.length:
        raise StorageError("more than one record at that location (length too long)")
    return record, length


def check_capture(store: WarcStore, capture: Capture) -> list[str]:
    """What is wrong with one index row and the record it points at."""
    try:
        size = store.file_size(capture.warc_file)
    except StorageError as exc:
        return [str(exc)]
    if size is None:
        return ["WARC file is missing"]
    if capture.offset < 0 or capture.length <= 0 or capture.offset + capture.length > size:
        return [f"record ({capture.length} bytes) runs past the end of the file ({size} bytes)"]
    try:
        record, _length = read_indexed(store, capture)
    except StorageError as exc:
        return [str(exc)]
    problems = []
    expected = {
        "WARC-Record-ID": (record.header("WARC-Record-ID"), capture.record_id),
        "WARC-Target-URI": (record.target_uri, capture.url),
        "WARC-Type": (record.rec_type, capture.record_type),
        "WARC-Payload-Digest": (record.header("WARC-Payload-Digest"), capture.payload_digest),
    }
    for name, (found, indexed) in expected.items():
        if (found or None) != (indexed or None):
            problems.append(f"{name} is {found!r} but the index says {indexed!r}")
    return problems + digest_problems(record)


def check_file(store: WarcStore, name: str, indexed: set[int]) -> list[Problem]:
    """Problems of one WARC file read end to end: unreadable bytes, a partial tail, and bad
    digests of the records no index row points at (indexed ones are checked row by row)."""
    problems: list[Problem] = []
    try:
        with store.local_copy(name) as path:
            for scanned in scan_warc(path, unchecked=frozenset(indexed)):
                problems += [Problem(name, scanned.offset,
                                     f"{scanned.record.rec_type} record: {message}")
                             for message in digest_problems(scanned.record)]
    except ScanError as exc:
        problems.append(Problem(name, exc.offset, f"unreadable from here on: {exc.reason}"))
    except (OSError, StorageError) as exc:
        problems.append(Problem(name, 0, f"cannot read the file: {exc}"))
    return problems


def verify(archive: Archive) -> list[Problem]:
    """Every problem found in the capture index and the WARC files, by file and offset."""
    problems: list[Problem] = []
    indexed: dict[str, set[int]] = {}
    with archive.db.session() as session:
        rows = session.scalars(select(Capture).order_by(Capture.warc_file, Capture.offset))
        for capture in rows:
            indexed.setdefault(capture.warc_file, set()).add(capture.offset)
            problems += [Problem(capture.warc_file, capture.offset,
                                 f"capture #{capture.id} ({capture.url}): {message}")
                         for message in check_capture(archive.store, capture)]
    for name in archive.store.files():
        problems += check_file(archive.store, name, indexed.get(name, set()))
    return sorted(problems, key=lambda p: (p.warc_file, p.offset))
