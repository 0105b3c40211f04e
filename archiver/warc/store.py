"""The WARC store: a folder of ``<prefix>-<timestamp>-<serial>.warc.gz`` files.

Writing: each record is its own gzip member; the records of one exchange are appended in one
write and flushed; ``sync()`` fsyncs them, and callers call it before committing index rows, so
an index row always points at bytes that are on disk (one fsync per page, not per record).
Files roll over by size;
names are created exclusively, so processes sharing the folder never write the same file.

While a file is being written it has a ``<name>.open`` marker beside it naming its writer
(pid, host name, boot ID), and the writer holds an exclusive ``flock`` on it; a clean close
removes the marker.  A marker left behind means the writer died: before its first write, a
store runs its ``prepare`` hook once, which the archive points at ``archiver.warc.repair`` to
cut such a file's partial tail record.  A write that fails midway (a full disk) is cut back off
at once, so a file closed as clean never holds part of a record; if even that fails, the file
is left with its marker to that repair, and the next write begins a new file.

Reading: a record is read back by (file, offset, length) alone; files are walked record by
record to rebuild the index.

With object storage (``storage.url``, see ``archiver.warc.remote``) the folder is a spool: a
file is uploaded when it is closed and then removed here, and a record is read from the local
file while it exists, else by a ranged GET.  ``checkpoint()`` closes (and so uploads) the file
being written; workers call it after each batch so their records reach the shared storage.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import logging
import os
import re
import socket
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from warcio.archiveiterator import ArchiveIterator
from warcio.warcwriter import WARCWriter

from archiver import __version__
from archiver.clock import utcnow
from archiver.errors import MissingFileError, StorageError, WriteError
from archiver.net.client import Exchange
from archiver.warc.reader import Limited, Readable, ScanError, resume_point, scan_warc
from archiver.warc.records import (
    GZIP_LEVEL,
    REQUEST_TYPE,
    RESPONSE_TYPE,
    REVISIT_PROFILE,
    RecordError,
    RecordLocation,
    http_head,
    location_from_record,
    record_id,
    record_member,
    sha1_digest,
)
from archiver.warc.records import WARC_VERSION as WARC_VERSION  # noqa: PLC0414 - re-exported
from archiver.warc.remote import RemoteStorage

log = logging.getLogger(__name__)
SOFTWARE = f"link-archiver/{__version__} (warcio)"
# Hop-by-hop framing that no longer describes the stored (de-chunked) body.
_FRAMING_HEADERS = frozenset({"transfer-encoding"})
# A WARC file name: one path segment, no separators, ending in .warc or .warc.gz.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9._+@-]+\.warc(?:\.gz)?")
DIGEST_MEMORY = 100_000  # payload digests remembered for deduplication within a process
OPEN_SUFFIX = ".open"  # ``<name>.open``: the file is being written (or its writer died)
UPLOAD_RETRY_INTERVAL = 60.0  # seconds between a writer's new tries of its failed uploads
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
_WRITING: set[Path] = set()  # files open for writing in this process
_WRITING_LOCK = threading.Lock()


def boot_id() -> str:
    """This machine's boot ID (Linux), shared by its containers; '' where there is none."""
    try:
        return BOOT_ID_FILE.read_text(encoding="ascii").strip()
    except OSError:
        return ""


def writer_identity() -> dict[str, object]:
    """Who is writing: what an ``.open`` marker records."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "boot": boot_id(),
            "started": utcnow().isoformat()}


def marker_path(path: Path) -> Path:
    """The ``.open`` marker of a WARC file."""
    return path.with_name(path.name + OPEN_SUFFIX)


def written_here(path: Path) -> bool:
    """Whether a store of this process has ``path`` open for writing."""
    with _WRITING_LOCK:
        return path.resolve() in _WRITING


def fsync_directory(directory: Path) -> None:
    """Make a file's creation, removal or renaming in ``directory`` durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _create_marker(marker: Path) -> bool:
    """Create ``marker`` holding this writer's identity, atomically; False if it exists."""
    data = json.dumps(writer_identity()).encode("utf-8")
    draft = marker.with_name(f".{marker.name}.{os.getpid()}.{threading.get_ident()}")
    with open(draft, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(draft, marker)  # appears whole or not at all
    except FileExistsError:
        return False
    except OSError:  # no hard links on this file system: an exclusive create will do
        try:
            with open(marker, "xb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except FileExistsError:
            return False
    finally:
        draft.unlink()
    return True


def payload_digest(body: bytes) -> str:
    """WARC-Payload-Digest of a (de-chunked) body: ``sha1:`` and base32, as warcio writes it."""
    return sha1_digest(body)


def warc_date(moment: datetime) -> str:
    """WARC 1.1 date with microseconds for a naive UTC datetime."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _record_bytes(build: Any) -> tuple[bytes, Any]:
    """Serialise one record as its own gzip member; return its bytes and its WARC headers.

    warcio would compress at level 9; level 6 is several times faster for a few percent more.
    """
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=False, warc_version=WARC_VERSION)
    record = build(writer)
    writer.write_record(record)
    packer = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, zlib.MAX_WBITS + 16)
    return packer.compress(buffer.getvalue()) + packer.flush(), record.rec_headers


def _exchange_headers(exchange: Exchange) -> list[tuple[str, str]]:
    """WARC headers that a response and its request share."""
    headers = [("WARC-Target-URI", exchange.url), ("WARC-Date", warc_date(exchange.started_at))]
    if exchange.peer_ip:
        headers.append(("WARC-IP-Address", exchange.peer_ip))
    return headers


def _response_member(exchange: Exchange, shared: list[tuple[str, str]],
                     revisit_of: RecordLocation | None,
                     digest: str | None) -> tuple[bytes, str, str]:
    """The response (or revisit) record as a gzip member, its record ID and payload digest."""
    head = http_head(exchange.http_version, f"{exchange.status} {exchange.reason}".strip(),
                     [(k, v) for k, v in exchange.headers if k.lower() not in _FRAMING_HEADERS])
    digest = digest or payload_digest(exchange.body)
    identifier = record_id()
    headers = [("WARC-Type", "response" if revisit_of is None else "revisit"),
               ("WARC-Record-ID", identifier), *shared]
    if exchange.truncated:
        headers.append(("WARC-Truncated", exchange.truncated))
    if revisit_of is None:
        body = exchange.body
        headers.append(("WARC-Payload-Digest", digest))
    else:  # the HTTP headers alone; the payload is the one ``revisit_of`` stored
        body = b""
        digest = revisit_of.payload_digest or digest
        headers += [("WARC-Refers-To", revisit_of.record_id),
                    ("WARC-Profile", REVISIT_PROFILE),
                    ("WARC-Refers-To-Target-URI", revisit_of.url),
                    ("WARC-Refers-To-Date", warc_date(revisit_of.captured_at)),
                    ("WARC-Payload-Digest", digest)]
    headers += [("WARC-Block-Digest", sha1_digest(head, body)), ("Content-Type", RESPONSE_TYPE)]
    return record_member(headers, head, body), identifier, digest


def _request_member(exchange: Exchange, shared: list[tuple[str, str]],
                    response_id: str) -> bytes:
    """The request record, concurrent to the response ``response_id``, as a gzip member."""
    head = exchange.request_head
    _, separator, body = head.partition(b"\r\n\r\n")
    headers = [("WARC-Type", "request"), ("WARC-Record-ID", record_id()),
               *shared, ("WARC-Concurrent-To", response_id),
               ("WARC-Payload-Digest", sha1_digest(body if separator else b"")),
               ("WARC-Block-Digest", sha1_digest(head)), ("Content-Type", REQUEST_TYPE)]
    return record_member(headers, head)


class WarcStore:
    """Appends records to rotating WARC files in one folder; safe to share between threads."""

    def __init__(self, directory: Path, prefix: str = "archive",
                 max_file_bytes: int = 10**9, remote: RemoteStorage | None = None) -> None:
        self.directory = directory
        self.remote = remote
        self.prefix = prefix
        self.max_file_bytes = max_file_bytes
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None  # unbuffered: no bytes of a failed write linger
        self._name: str | None = None
        self._serial = 0
        self._digests: dict[str, RecordLocation] = {}
        self._digest_lock = threading.Lock()  # apart from the file's: lookups never wait on I/O
        self._root: Path | None = None
        # Run once, before the first file is begun (the archive repairs dead writers' files).
        self.prepare: Callable[[], None] | None = None
        self._prepared = False
        # Files this store closed whose upload failed: tried again when a later file closes,
        # at most every ``upload_retry_interval`` seconds (a storage outage is not hammered).
        self._unpublished: set[Path] = set()
        self._last_upload_try = 0.0
        self.upload_retry_interval = UPLOAD_RETRY_INTERVAL

    # -- writing -------------------------------------------------------------------------

    def _prepare_once(self) -> None:
        if not self._prepared:
            self._prepared = True
            if self.prepare is not None:
                self.prepare()

    def prepare_for_writing(self) -> None:
        """Run the ``prepare`` hook now (it runs once per store, before the first write)."""
        with self._lock:
            self._prepare_once()

    def _open_new_file(self) -> None:
        self._prepare_once()
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = utcnow().strftime("%Y%m%d%H%M%S%f")
        while True:
            self._serial += 1
            name = f"{self.prefix}-{stamp}-{self._serial:05d}.warc.gz"
            path = self.directory / name
            # The marker comes first, so no file is ever being written without one.
            if not _create_marker(marker_path(path)):
                continue
            try:
                handle = open(path, "xb", buffering=0)  # noqa: SIM115 - kept open across writes
            except FileExistsError:
                marker_path(path).unlink()
                continue
            break
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # held while the file is written
        with _WRITING_LOCK:
            _WRITING.add(path.resolve())
        fsync_directory(self.directory)
        self._file, self._name = handle, name
        info = {
            "software": SOFTWARE,
            "format": "WARC File Format 1.1",
            "conformsTo": "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/",
            "hostname": socket.gethostname(),
            "isPartOf": self.prefix,
        }
        data, _ = _record_bytes(lambda w: w.create_warcinfo_record(name, info))
        try:
            self._append(data)
        except WriteError:
            if self._file is not None:  # cut back to nothing: better no file at all
                self._let_go()
                handle.close()
                path.unlink(missing_ok=True)
                marker_path(path).unlink(missing_ok=True)
            raise

    def _append(self, data: bytes) -> int:
        """Write ``data`` at the end of the current file; return where it begins.  A write
        that fails midway is cut back off (WriteError): no part of a record stays behind."""
        assert self._file is not None and self._name is not None
        descriptor, name = self._file.fileno(), self._name
        offset = os.lseek(descriptor, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view):]
        except OSError as exc:
            if self._cut_back(offset):
                raise WriteError(f"cannot write to {name}: {exc}") from exc
            raise WriteError(f"cannot write to {name}: {exc}; it is left to the crash repair "
                             "and the next write begins a new file") from exc
        return offset

    def _cut_back(self, offset: int) -> bool:
        """Cut the current file back to ``offset`` (where a failed write began), durably;
        if that fails too, give the file up with its marker, so the crash repair cuts it (this
        store's own before its next file), and return False."""
        assert self._file is not None
        try:
            os.ftruncate(self._file.fileno(), offset)
            os.fsync(self._file.fileno())
        except OSError:
            log.warning("cannot cut a failed write off %s", self._name, exc_info=True)
            handle, _path = self._let_go()
            handle.close()  # releases the flock: the repair may take the file
            self._prepared = False
            return False
        return True

    def _let_go(self) -> tuple[BinaryIO, Path]:
        """Stop writing the current file (left as it is); its handle and path."""
        assert self._file is not None and self._name is not None
        handle, path = self._file, self.directory / self._name
        self._file = self._name = None
        with _WRITING_LOCK:
            _WRITING.discard(path.resolve())
        return handle, path

    def sync(self) -> None:
        """Make every record written so far durable (fsync); call before committing their
        index rows. A file closed on rotation was synced as it closed."""
        # fsync a duplicate descriptor outside the lock, so that other threads go on writing
        # meanwhile; if the file is rotated away in between, it was synced as it closed.
        with self._lock:
            if self._file is None:
                return
            descriptor = os.dup(self._file.fileno())
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def write_exchange(self, exchange: Exchange, revisit_of: RecordLocation | None = None,
                       digest: str | None = None) -> RecordLocation:
        """Write a response (or, when ``revisit_of`` holds the same payload, a revisit record)
        and its request record; return the location of the response or revisit record.
        ``digest`` is the body's payload digest when the caller has already computed it."""
        shared = _exchange_headers(exchange)
        response_bytes, response_id, digest = _response_member(exchange, shared, revisit_of,
                                                               digest)
        request_bytes = _request_member(exchange, shared, response_id)
        with self._lock:
            if self._file is None or os.fstat(self._file.fileno()).st_size >= \
                    self.max_file_bytes:
                self._close_current()
                self._open_new_file()
            assert self._name is not None
            offset = self._append(response_bytes + request_bytes)
            name = self._name
        location = RecordLocation(
            warc_file=name, offset=offset, length=len(response_bytes),
            record_type="revisit" if revisit_of is not None else "response",
            record_id=response_id, url=exchange.url, captured_at=exchange.started_at,
            status=exchange.status, mime=exchange.content_type or None,
            payload_digest=digest, truncated=exchange.truncated,
        )
        if revisit_of is None and not exchange.truncated:
            self.remember(location)
        return location

    def remember(self, location: RecordLocation) -> None:
        """Note a whole payload this process wrote, so later copies become revisits."""
        with self._digest_lock:
            self._digests[location.payload_digest or ""] = location
            if len(self._digests) > DIGEST_MEMORY:
                self._digests.pop(next(iter(self._digests)))

    def forget(self, locations: list[RecordLocation]) -> None:
        """Forget payloads noted by :meth:`remember` at these locations (their index rows will
        not exist: a revisit of them could not be replayed)."""
        with self._digest_lock:
            for location in locations:
                if self._digests.get(location.payload_digest or "") == location:
                    del self._digests[location.payload_digest or ""]

    def written(self, digest: str) -> RecordLocation | None:
        """A response this process wrote with that payload digest, if it remembers one."""
        with self._digest_lock:
            return self._digests.get(digest)

    def _close_current(self) -> None:
        """Close the file cleanly: synced, marker removed, then the lock let go; with object
        storage, upload it (under the store's lock: files are small, a batch's worth)."""
        handle, name = self._file, self._name
        self._file = None
        self._name = None
        if handle is None or name is None:
            return
        path = self.directory / name
        try:
            handle.flush()
            os.fsync(handle.fileno())
            marker_path(path).unlink(missing_ok=True)
            fsync_directory(self.directory)
        finally:
            with _WRITING_LOCK:
                _WRITING.discard(path.resolve())
            handle.close()  # releases the flock
        if not self._publish(path):
            self._unpublished.add(path)
            self._last_upload_try = time.monotonic()
        self._retry_unpublished()

    def _retry_unpublished(self) -> None:
        """Upload again the files of this store whose upload failed, if it is time to."""
        now = time.monotonic()
        if not self._unpublished or now - self._last_upload_try < self.upload_retry_interval:
            return
        self._last_upload_try = now
        for path in sorted(self._unpublished):
            if path.exists() and not self._publish(path):
                return  # the storage still fails: the rest wait for the next try
            self._unpublished.discard(path)

    def _publish(self, path: Path) -> bool:
        """Upload a closed file to the object storage and remove it here; False if it failed
        (the file then stays in the folder and ``publish_pending`` tries again)."""
        try:
            self.publish(path)
        except StorageError:
            log.exception("upload of %s failed; it stays in %s", path.name, self.directory)
            return False
        return True

    def publish(self, path: Path) -> None:
        """With object storage, upload a finished file of the folder and remove it here
        (a reader that has it open still reads it); without, leave it where it is."""
        if self.remote is not None:
            self.remote.upload(path, path.name)
            path.unlink(missing_ok=True)

    def unpublish(self, path: Path) -> None:
        """Undo ``publish`` for a file whose index rows were never committed."""
        if self.remote is not None:
            try:
                self.remote.delete(path.name)
            except StorageError:
                log.exception("could not remove %s from %s", path.name, self.remote)

    def publish_pending(self) -> list[str]:
        """Upload every closed file still in the folder (left by a failed upload or a writer
        that died and was repaired); return the names uploaded."""
        if self.remote is None or not self.directory.is_dir():
            return []
        uploaded = []
        for path in sorted(self.directory.iterdir()):
            if (path.name.endswith((".warc.gz", ".warc")) and path.is_file()
                    and not marker_path(path).exists() and not written_here(path)
                    and self._publish(path)):
                uploaded.append(path.name)
        return uploaded

    def checkpoint(self) -> None:
        """With object storage, close the file being written so that it is uploaded (a
        batch's records become readable by every machine); without, keep it open."""
        if self.remote is not None:
            self.close()

    def close(self) -> None:
        """Close the file being written."""
        with self._lock:
            self._close_current()

    # -- reading -------------------------------------------------------------------------

    def path_of(self, warc_file: str) -> Path:
        """Absolute path of a WARC file name, refusing anything outside the folder."""
        if self._root is None:
            self._root = self.directory.resolve()
        if not _PLAIN_NAME.fullmatch(warc_file) or warc_file.startswith("."):
            raise StorageError(f"not a WARC file of this store: {warc_file!r}")
        return self._root / warc_file

    def read_range(self, warc_file: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes of a file from ``offset`` (see :meth:`open_range`)."""
        with self.open_range(warc_file, offset, length) as source:
            return b"".join(iter(lambda: source.read(length), b""))

    @contextmanager
    def open_range(self, warc_file: str, offset: int, length: int) -> Iterator[Readable]:
        """A stream of up to ``length`` bytes of a file from ``offset``, read as it is
        consumed: from the folder while the file is there, else from the object storage."""
        try:
            handle = open(self.path_of(warc_file), "rb")  # noqa: SIM115 (closed below)
        except FileNotFoundError as exc:
            if self.remote is None:
                raise MissingFileError(f"cannot read {warc_file}@{offset}: "
                                       "no such WARC file") from exc
            with self.remote.open_range(warc_file, offset, length) as body:
                yield body
            return
        except OSError as exc:
            raise StorageError(f"cannot read {warc_file}@{offset}: {exc}") from exc
        with handle:
            handle.seek(offset)
            yield _ReadErrors(Limited(handle, length), f"{warc_file}@{offset}")

    def read_record_bytes(self, warc_file: str, offset: int, length: int) -> bytes:
        """The raw (gzipped) bytes of one record."""
        data = self.read_range(warc_file, offset, length)
        if len(data) != length:
            raise StorageError(f"{warc_file}@{offset}: record is cut short")
        return data

    def file_size(self, warc_file: str) -> int | None:
        """The size of a WARC file in bytes, or None when it is nowhere to be found."""
        try:
            return self.path_of(warc_file).stat().st_size
        except FileNotFoundError:
            return self.remote.size(warc_file) if self.remote is not None else None

    def local_files(self) -> list[str]:
        """Names of the WARC files in the folder (with object storage: those not uploaded)."""
        if not self.directory.exists():
            return []
        return sorted(p.name for p in self.directory.iterdir()
                      if p.is_file() and p.name.endswith((".warc.gz", ".warc")))

    def files(self) -> list[str]:
        """Names of every WARC file of the store, oldest name first."""
        return sorted(self.file_sizes())

    def file_sizes(self) -> dict[str, int]:
        """Every WARC file of the store with its size in bytes (the local copy where both
        exist: it may be an upload in progress)."""
        sizes = self.remote.sizes() if self.remote is not None else {}
        for name in self.local_files():
            with contextlib.suppress(FileNotFoundError):  # uploaded and removed meanwhile
                sizes[name] = (self.directory / name).stat().st_size
        return sizes

    @contextmanager
    def local_copy(self, warc_file: str) -> Iterator[Path]:
        """A path to read a whole file from: the file itself, or a temporary download of it
        from the object storage (removed afterwards)."""
        path = self.path_of(warc_file)
        if path.is_file() or self.remote is None:
            yield path
            return
        with tempfile.TemporaryDirectory(prefix="warc-") as folder:
            copy = Path(folder) / warc_file
            self.remote.download(warc_file, copy)
            yield copy

    def iter_locations(self, warc_file: str,
                       skipped: list[str] | None = None) -> Iterator[RecordLocation]:
        """Index facts of every indexable record of one file, read from the file alone.

        A file that is not readable as WARC raises StorageError naming it and the byte where
        reading stopped (a partial tail included).  A record the index cannot keep (no valid
        WARC-Date...) raises StorageError naming it too.  With ``skipped``, both are described
        there instead and reading goes on: after the record, or, past unreadable bytes of a
        gzipped file, at the next whole record (StorageError when none follows).
        """
        with self.local_copy(warc_file) as path:
            start = 0
            while True:
                try:
                    yield from self._locations_from(path, warc_file, start, skipped)
                    return
                except ScanError as exc:
                    reason = exc.reason[:120].encode("ascii", "backslashreplace").decode()
                    problem = f"{warc_file}: not readable as WARC from byte {exc.offset} ({reason})"
                    resume = None if skipped is None else resume_point(path, exc.offset)
                    if skipped is None or resume is None:
                        raise StorageError(f"{problem}; `archiver verify` lists what is "
                                           "wrong") from exc
                    skipped.append(f"{problem}; read on from byte {resume}, where whole records "
                                   "begin again")
                    start = resume
                except OSError as exc:
                    raise StorageError(f"{warc_file}: cannot read it: {exc}") from exc

    @staticmethod
    def _locations_from(path: Path, warc_file: str, start: int,
                        skipped: list[str] | None) -> Iterator[RecordLocation]:
        """Index facts of the records of a file from byte ``start`` on (see iter_locations)."""
        for scanned in scan_warc(path, check=False, start=start):
            try:
                location = location_from_record(scanned.record, warc_file,
                                                scanned.offset, scanned.length)
            except RecordError as exc:
                problem = f"{warc_file}@{scanned.offset}: {exc}"
                if skipped is None:
                    raise StorageError(problem) from exc
                skipped.append(problem)
                continue
            if location is not None:
                yield location


class _ReadErrors:
    """A readable whose OSErrors become StorageErrors naming what was read."""

    def __init__(self, source: Readable, where: str) -> None:
        self._source = source
        self._where = where

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes."""
        try:
            return self._source.read(size)
        except OSError as exc:
            raise StorageError(f"cannot read {self._where}: {exc}") from exc


def open_record(data: bytes) -> Any:
    """Parse one record from its raw bytes (as read by ``read_record_bytes``)."""
    iterator = ArchiveIterator(io.BytesIO(data))
    try:
        return next(iter(iterator))
    except StopIteration as exc:
        raise StorageError("no WARC record at that location") from exc

