"""Repair after a crash: cut the partial tail record of a WARC file whose writer died.

A WARC file being written has a ``<name>.open`` marker naming its writer (pid, host name, boot
ID) and its writer holds an exclusive ``flock`` on it; a clean close removes the marker (see
``archiver.warc.store``).  So only files with a marker can end in part of a record, and only
those are looked at: a file is repaired when its writer is gone (same host and boot, pid no
longer running; or the machine rebooted since) *and* its lock can be taken.  A writer on the
same kernel but in another container (same boot ID, other host name) is trusted to the lock
alone, once its marker is a minute old; a writer on another machine is left alone.

Repairing a file: read its gzip members from the last point known to be good (the last index
row's record, which was fsynced before the row was committed; else the start of the file),
each member must inflate completely and hold exactly one whole WARC record.  The bytes after
the last whole record are copied to ``quarantine/<name>.partial-<timestamp>`` and cut off (a
file with no whole record at all is moved there).  If whole records follow the unreadable
bytes, this is damage in the middle of the file, not a crash tail: nothing is cut.  Index
rows of the file that do not point at one of its whole records are removed (there should be
none: rows are committed after their records are on disk) and reported.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import socket
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import delete, select

from archiver.clock import utcnow
from archiver.db import Database
from archiver.errors import StorageError
from archiver.models import Capture
from archiver.warc.reader import (
    iter_gzip_members,
    member_record_id,
    next_whole_member,
    whole_member_at,
)
from archiver.warc.store import (
    OPEN_SUFFIX,
    WarcStore,
    boot_id,
    fsync_directory,
    written_here,
)

log = logging.getLogger(__name__)
QUARANTINE = "quarantine"
UNSURE_MARKER_AGE = 60.0  # seconds a marker that only the lock vouches for must have existed
_CHUNK = 1 << 20


class WriterState(StrEnum):
    """What is known about the writer named in an ``.open`` marker."""

    ALIVE = "alive"  # still writing: hands off
    GONE = "gone"  # dead for sure; the lock is a second guard
    UNSURE = "unsure"  # same kernel, other container: the lock (and the marker's age) decide
    ELSEWHERE = "elsewhere"  # another machine: nothing here can tell


@dataclass(frozen=True)
class Writer:
    """The process an ``.open`` marker names."""

    pid: int
    host: str
    boot: str

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}"


@dataclass(frozen=True)
class _Row:
    """An index row of the file being repaired."""

    id: int
    offset: int
    length: int
    record_id: str


def read_marker(marker: Path) -> Writer | None:
    """The writer a marker names, or None when it cannot be read."""
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
        return Writer(int(data["pid"]), str(data["host"]), str(data.get("boot") or ""))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def writer_state(writer: Writer | None, path: Path) -> WriterState:
    """Whether the writer of ``path`` is alive, gone, or cannot be told from here."""
    if writer is None or writer.pid <= 0:
        return WriterState.UNSURE
    here_boot = boot_id()
    if writer.host != socket.gethostname():
        same_kernel = bool(here_boot) and writer.boot == here_boot
        return WriterState.UNSURE if same_kernel else WriterState.ELSEWHERE
    if writer.boot and here_boot and writer.boot != here_boot:
        return WriterState.GONE  # the machine rebooted since
    if writer.pid == os.getpid():
        return WriterState.ALIVE if written_here(path) else WriterState.GONE
    return WriterState.ALIVE if _pid_running(writer.pid) else WriterState.GONE


def repair_folder(store: WarcStore, db: Database | None = None) -> list[str]:
    """Cut the partial tail of every WARC file whose writer died; return notes of what was done."""
    # With ``db``, index rows of a repaired file that do not point at one of its whole records
    # are removed, and its last row tells where it is known to be good (only the tail is read).
    notes: list[str] = []
    if not store.directory.is_dir():
        return notes
    for draft in store.directory.glob(f".*{OPEN_SUFFIX}.*"):  # a marker's draft, never linked
        if _marker_age(draft) > UNSURE_MARKER_AGE:
            draft.unlink(missing_ok=True)
    for marker in sorted(store.directory.glob("*" + OPEN_SUFFIX)):
        path = marker.with_name(marker.name.removesuffix(OPEN_SUFFIX))
        if not path.name.endswith(".warc.gz"):
            continue
        try:
            notes += _repair_marked(store, db, path, marker)
        except OSError as exc:
            notes.append(f"{path.name}: cannot repair: {exc}")
    for note in notes:
        log.warning("repair: %s", note)
    return notes


def _marker_age(marker: Path) -> float:
    try:
        return time.time() - marker.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _repair_marked(store: WarcStore, db: Database | None, path: Path,
                   marker: Path) -> list[str]:
    """Repair one marked file if its writer is gone; notes of what was done."""
    writer = read_marker(marker)
    state = writer_state(writer, path)
    who = str(writer) if writer is not None else "an unknown writer"
    if state is WriterState.ALIVE:
        return []
    if state is WriterState.ELSEWHERE:
        return [f"{path.name}: left alone: its writer ({who}) ran on another machine; remove "
                f"{marker.name} once it is gone and the file is repaired at the next start"]
    young = state is WriterState.UNSURE and _marker_age(marker) < UNSURE_MARKER_AGE
    try:
        handle = open(path, "r+b")  # noqa: SIM115 - closed below, after the lock is used
    except FileNotFoundError:
        if young:
            return []
        marker.unlink(missing_ok=True)
        return [f"{path.name}: its writer ({who}) died before creating it; marker removed"]
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return []  # written or repaired by another process right now
        if young or not marker.exists():
            return []  # too soon to tell, or repaired meanwhile
        notes = _cut_partial_tail(store, db, path, handle)
        marker.unlink(missing_ok=True)
        fsync_directory(store.directory)
    return notes


def _rows_of(db: Database | None, name: str) -> list[_Row]:
    if db is None:
        return []
    with db.session() as session:
        return [_Row(*row) for row in session.execute(
            select(Capture.id, Capture.offset, Capture.length, Capture.record_id)
            .where(Capture.warc_file == name).order_by(Capture.offset)).all()]


def _trusted_start(handle: BinaryIO, rows: list[_Row]) -> int:
    """Where reading may start: the last indexed record, if it is whole and the row's."""
    if rows:
        last = rows[-1]
        if whole_member_at(handle, last.offset) == (last.length, last.record_id):
            return last.offset
    return 0


def _whole_end(handle: BinaryIO, start: int) -> tuple[int, dict[int, tuple[int, str]]]:
    """End of the last whole record from ``start`` on, and every whole member read."""
    handle.seek(start)
    end = start
    members: dict[int, tuple[int, str]] = {}
    try:
        for offset, member in iter_gzip_members(handle):
            record_id = member_record_id(member)
            if record_id is None:
                break
            length = member.finish()
            members[start + offset] = (length, record_id)
            end = start + offset + length
    except StorageError:
        pass  # a member cut short or corrupt: the end is the last whole one before it
    return end, members


def _quarantine(store: WarcStore, path: Path, handle: BinaryIO, end: int) -> Path:
    """Copy the bytes from ``end`` on to the quarantine folder, durably."""
    folder = store.directory / QUARANTINE
    folder.mkdir(exist_ok=True)
    target = folder / f"{path.name}.partial-{utcnow().strftime('%Y%m%d%H%M%S%f')}"
    with open(target, "xb") as out:
        handle.seek(end)
        shutil.copyfileobj(handle, out, _CHUNK)
        out.flush()
        os.fsync(out.fileno())
    fsync_directory(folder)
    return target


def _cut_partial_tail(store: WarcStore, db: Database | None, path: Path,
                      handle: BinaryIO) -> list[str]:
    """Truncate ``path`` to its last whole record and drop index rows that point elsewhere."""
    size = os.fstat(handle.fileno()).st_size
    rows = _rows_of(db, path.name)
    start = _trusted_start(handle, rows)
    end, members = _whole_end(handle, start)
    notes: list[str] = []
    if end < size:
        if next_whole_member(handle, end) is not None:
            return [f"{path.name}: unreadable from byte {end}, but whole records follow: damage "
                    "inside the file, not a crash tail; nothing cut (run `archiver verify`)"]
        if size == 0:
            path.unlink()
            notes.append(f"{path.name}: empty file of a writer that died; removed")
        else:
            kept = _quarantine(store, path, handle, end)
            if end == 0:
                path.unlink()
                notes.append(f"{path.name}: no whole record in its {size} bytes; moved to "
                             f"{QUARANTINE}/{kept.name}")
            else:
                handle.truncate(end)
                os.fsync(handle.fileno())
                notes.append(f"{path.name}: cut {size - end} bytes of a partial record at byte "
                             f"{end}; kept in {QUARANTINE}/{kept.name}")
    bad = [row for row in rows
           if (row.offset + row.length > start if row.offset < start
               else members.get(row.offset) != (row.length, row.record_id))]
    if bad and db is not None:
        with db.session() as session:
            session.execute(delete(Capture).where(Capture.id.in_([row.id for row in bad])))
        notes.append(f"{path.name}: removed {len(bad)} index rows that did not point at a whole "
                     "record: " + ", ".join(f"#{row.id}@{row.offset}" for row in bad[:20]))
    return notes
