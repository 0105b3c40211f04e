"""Bring WARC files made by other tools (wget, pywb, Browsertrix, ArchiveWeb.page) into the
archive: ``.warc``, ``.warc.gz`` and ``.wacz`` files.

Each WARC is checked record by record as it is copied next to the store's files (every
record readable, every declared block and payload digest matching its bytes, as ``archiver
verify`` checks them, and every record one the index can keep: a valid WARC-Date, not
segmented), so garbage is refused within its first bytes; then it is moved into the WARC folder
as ``imported-<original name>`` (never overwriting a file) and indexed.  A WACZ entry that
would unpack to more than ``MAX_UNPACK_RATIO`` times its size in the zip is refused unread.  An
import is all or nothing: when any input is bad, no file is left in the folder and no row in
the index.  The imports of one archive on one machine run one at a time (a lock file in the data
folder): a second import of the same file waits, then finds it imported.  One that fails never
removes a file another process has indexed meanwhile (an import on another machine).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from archiver.archive import Archive
from archiver.capture import index_locations
from archiver.errors import ArchiverError, StorageError
from archiver.models import Capture, Link
from archiver.net.content import GZIP_MAGIC
from archiver.warc.reader import ScanError, ScannedRecord, scan_stream
from archiver.warc.records import RecordError, RecordLocation, location_from_record

try:
    import fcntl
except ImportError:  # not POSIX: imports are not serialised
    fcntl = None  # type: ignore[assignment]

IMPORT_PREFIX = "imported-"
LOCK_FILE = "import.lock"  # in the data folder: held by the import that runs
ZIP_MAGIC = b"PK\x03\x04"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_BATCH = 500
# A WACZ entry may unpack to at most this many times its size in the zip (above 1 MiB).
MAX_UNPACK_RATIO = 100
_RATIO_FLOOR = 1 << 20

log = logging.getLogger(__name__)


@dataclass
class ImportSummary:
    """What one import did: files kept, files already present, index rows added."""

    # names in the WARC folder of files whose records were indexed: new ones, and files
    # already there whose records the index lacked
    imported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # inputs whose bytes were already there
    records: int = 0  # index rows added
    links: int = 0  # URL keys among the new rows that belong to links of this archive

    def line(self) -> str:
        """One-line summary for the CLI."""
        return (f"import: {len(self.imported)} files imported, {len(self.skipped)} already "
                f"present; {self.records} records indexed, {self.links} links of this "
                "archive gained captures")


@dataclass
class _Staged:
    """One WARC copied next to the store's files under a temporary name, checked."""

    source: str  # what to call it in messages
    base_name: str
    temp: Path
    sha256: str
    gzipped: bool


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _Copying:
    """A readable that copies what is read from ``source`` to ``out`` and hashes it, so a WARC
    is checked as it is staged (garbage is refused within its first bytes)."""

    def __init__(self, source: IO[bytes], out: IO[bytes], source_name: str) -> None:
        self._source = source
        self._out = out
        self._name = source_name
        self.digest = hashlib.sha256()

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes of the source, copied and hashed."""
        try:
            data = self._source.read(size)
        except (OSError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise _SourceError(f"{self._name}: cannot read it: {exc}") from exc
        self.digest.update(data)
        self._out.write(data)
        return data


class _SourceError(StorageError):
    """The input itself could not be read (not a problem of the WARC in it)."""


def _check_record(scanned: ScannedRecord, source: str) -> None:
    """Refuse a record whose declared block or payload digest does not match its bytes (the
    checks ``archiver verify`` makes), or that the index could not keep."""
    record = scanned.record
    where = (f"{record.rec_type or 'untyped'} record for "
             f"{record.target_uri or '(no WARC-Target-URI)'} at byte {scanned.offset}")
    try:
        location_from_record(record, "", scanned.offset, scanned.length)
    except RecordError as exc:
        raise StorageError(f"{source}: {where}: {exc} (the file was refused)") from exc
    check = record.digests
    if check.mismatches:
        raise StorageError(f"{source}: {where}: {'; '.join(check.mismatches)} "
                           "(damaged or altered; the file was refused)")
    for note in check.unchecked:
        log.warning("import: %s: %s: %s", source, where, note)


def _stage_stream(stream: IO[bytes], source: str, base_name: str, folder: Path) -> _Staged:
    """Copy a WARC into a temporary file in ``folder``, checking every record as it is read."""
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".import-", suffix=".tmp",
                                     delete=False) as out:
        temp = Path(out.name)
        copying = _Copying(stream, out, source)
        try:
            head = copying.read(5)
            if not (head.startswith(GZIP_MAGIC) or head == b"WARC/"):
                raise StorageError(f"{source}: not a WARC file")
            count = 0
            for scanned in scan_stream(_Prefixed(head, copying)):
                count += 1
                _check_record(scanned, source)
            if count == 0:
                raise StorageError(f"{source}: holds no WARC records")
        except ScanError as exc:
            out.close()
            temp.unlink(missing_ok=True)
            if isinstance(exc.__cause__, _SourceError):
                raise exc.__cause__ from exc
            hint = " (recompress it record by record, e.g. with `warcio recompress`)" \
                if "more than one record" in exc.reason else ""
            raise StorageError(f"{source}: not a readable WARC file: {exc}{hint}") from exc
        except BaseException:
            out.close()
            temp.unlink(missing_ok=True)
            raise
    return _Staged(source, base_name, temp, copying.digest.hexdigest(),
                   gzipped=head.startswith(GZIP_MAGIC))


class _Prefixed:
    """``head`` (already read), then the rest of ``source``."""

    def __init__(self, head: bytes, source: _Copying) -> None:
        self._head = head
        self._source = source

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes."""
        if self._head:
            data, self._head = (self._head, b"") if size < 0 else \
                (self._head[:size], self._head[size:])
            return data
        return self._source.read(size)


def _safe_member(name: str) -> bool:
    """A zip entry name that stays inside the folder it is extracted to."""
    text = name.replace("\\", "/")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        return False
    return ".." not in text.split("/")


def _declared_hashes(package: zipfile.ZipFile, source: str) -> dict[str, str]:
    """``path -> hash`` from a WACZ's datapackage.json (empty when it has none)."""
    try:
        data = json.loads(package.read("datapackage.json"))
    except KeyError:
        return {}
    except (ValueError, zipfile.BadZipFile) as exc:
        raise StorageError(f"{source}: unreadable datapackage.json: {exc}") from exc
    resources: Any = data.get("resources") if isinstance(data, dict) else None
    if not isinstance(resources, list):
        return {}
    return {str(r["path"]): str(r["hash"]) for r in resources
            if isinstance(r, dict) and "path" in r and "hash" in r}


def _check_ratio(info: zipfile.ZipInfo, source: str) -> None:
    """Refuse a zip entry that would unpack to far more than it takes (a zip bomb) before a
    byte of it is written.  A WACZ stores its WARCs gzipped, uncompressed in the zip (ratio
    about 1); a plain WARC deflated in it shrinks about tenfold."""
    if info.file_size > _RATIO_FLOOR and \
            info.file_size > MAX_UNPACK_RATIO * max(info.compress_size, 1):
        raise StorageError(
            f"{source}: refusing a zip entry that unpacks to {info.file_size} bytes from "
            f"{info.compress_size} (more than {MAX_UNPACK_RATIO} times: a zip bomb?); to "
            "import it anyway, unzip it and import the WARC file itself")


def _check_declared_hash(expected: str, item: _Staged) -> None:
    """Compare a WARC with its hash in datapackage.json: sha256 (prefix in any case) is
    checked; another algorithm is logged as not checked."""
    if not expected:
        return
    algorithm, _, value = expected.strip().partition(":")
    if algorithm.lower() != "sha256" or not value:
        log.warning("import: %s: hash %r in datapackage.json not checked (only sha256 is)",
                    item.source, expected[:80])
        return
    if value.strip().lower() != item.sha256:
        raise StorageError(f"{item.source}: does not match the hash in datapackage.json")


def _stage_wacz(path: Path, folder: Path) -> list[_Staged]:
    """Check a WACZ's entry names, then stage each WARC under ``archive/``."""
    try:
        package = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise StorageError(f"{path}: not a readable zip (WACZ) file: {exc}") from exc
    staged: list[_Staged] = []
    with package:
        infos = package.infolist()
        for info in infos:
            if not _safe_member(info.filename):
                raise StorageError(f"{path}: refusing zip entry with an unsafe path "
                                   f"{info.filename!r}")
        members = [info for info in infos if not info.is_dir()
                   and PurePosixPath(info.filename).parent == PurePosixPath("archive")
                   and info.filename.endswith((".warc", ".warc.gz"))]
        if not members:
            raise StorageError(f"{path}: no WARC files under archive/ (not a WACZ file?)")
        declared = _declared_hashes(package, str(path))
        try:
            for info in members:
                source = f"{path}!{info.filename}"
                _check_ratio(info, source)
                with package.open(info) as stream:
                    item = _stage_stream(stream, source, PurePosixPath(info.filename).name,
                                         folder)
                staged.append(item)
                _check_declared_hash(declared.get(info.filename, ""), item)
        except BaseException:
            _discard(staged)
            raise
    return staged


def _not_a_file(path: Path) -> str:
    """What ``path`` is, said for an input that is not a regular file."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"
    if stat.S_ISDIR(mode):
        return "is a folder: give the WARC or WACZ files in it"
    return "is not a regular file (a device, pipe or socket): give a WARC or WACZ file"


def _stage(path: Path, folder: Path) -> list[_Staged]:
    """Stage one input: a WARC file, or the WARCs of a WACZ."""
    if not path.is_file():
        raise StorageError(f"{path}: {_not_a_file(path)}")
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head == ZIP_MAGIC:
        return _stage_wacz(path, folder)
    if not (head.startswith(GZIP_MAGIC) or head == b"WARC"):
        raise StorageError(f"{path}: not a WARC or WACZ file")
    with open(path, "rb") as handle:
        return [_stage_stream(handle, str(path), path.name, folder)]


def _discard(staged: list[_Staged]) -> None:
    for item in staged:
        item.temp.unlink(missing_ok=True)


def _stored_name(base_name: str, gzipped: bool, folder: Path, taken: set[str]) -> Path:
    """Reserve ``imported-<name>`` (``-2``, ``-3``... on a clash with a file in the folder or
    a name in ``taken``) by creating it empty."""
    stem = base_name
    for suffix in (".gz", ".warc", ".wacz"):
        stem = stem.removesuffix(suffix)
    stem = _UNSAFE_NAME.sub("-", stem).strip(".-") or "warc"
    suffix = ".warc.gz" if gzipped else ".warc"
    number = 1
    while True:
        name = f"{IMPORT_PREFIX}{stem}{suffix}" if number == 1 else \
            f"{IMPORT_PREFIX}{stem}-{number}{suffix}"
        target = folder / name
        if name in taken:
            number += 1
            continue
        try:
            with open(target, "xb"):
                return target
        except FileExistsError:
            number += 1


class _KnownFiles:
    """sha256 of the files already in the folder, hashed only when the sizes agree."""

    def __init__(self, folder: Path, names: list[str]) -> None:
        self.by_size: dict[int, list[Path]] = {}
        for name in names:
            path = folder / name
            self.by_size.setdefault(path.stat().st_size, []).append(path)
        self.hashes: dict[Path, str] = {}

    def find(self, size: int, sha256: str) -> Path | None:
        """The file of the folder with this size and hash, if there is one."""
        for path in self.by_size.get(size, []):
            if path not in self.hashes:
                self.hashes[path] = _file_sha256(path)
            if self.hashes[path] == sha256:
                return path
        return None


def _new_locations(session: Session, archive: Archive,
                   name: str) -> tuple[list[RecordLocation], int]:
    """Index facts of a placed file's records that the index lacks, and how many it has."""
    locations = list(archive.store.iter_locations(name))
    ids = [location.record_id for location in locations if location.record_id]
    known: set[str] = set()
    for start in range(0, len(ids), _BATCH):
        known.update(session.scalars(select(Capture.record_id).where(
            Capture.record_id.in_(ids[start:start + _BATCH]))))
    fresh = [location for location in locations
             if not location.record_id or location.record_id not in known]
    return fresh, len(locations)


@contextmanager
def _import_lock(path: Path) -> Iterator[None]:
    """Hold the import lock ``path``, waiting (and saying so) while another import holds it.
    Where it cannot be locked, the import runs unlocked, with a warning: an import that fails
    then still keeps the files another one indexed meanwhile (``_undo_placing``)."""
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT
                             | getattr(os, "O_CLOEXEC", 0), 0o644) if fcntl else None
    except OSError as exc:
        log.warning("import: cannot lock %s (%s); running without the lock", path, exc)
        descriptor = None
    if descriptor is None:
        yield
        return
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("import: waiting for another import (holding %s) to finish", path)
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        except OSError as exc:  # a file system without locks
            log.warning("import: cannot lock %s (%s); running without the lock", path, exc)
        yield
    finally:
        os.close(descriptor)  # the lock goes with it


def _referenced(archive: Archive, names: list[str]) -> set[str]:
    """The names among ``names`` that committed index rows point at (another process indexed
    them meanwhile); all of them when the index cannot be asked."""
    if not names:
        return set()
    try:
        with archive.db.session() as session:
            return set(session.scalars(select(Capture.warc_file).distinct().where(
                Capture.warc_file.in_(names))))
    except SQLAlchemyError:
        log.exception("import: cannot tell whether %s are indexed; keeping them", names)
        return set(names)


def _undo_placing(archive: Archive, placed: list[Path]) -> None:
    """Remove the files an import placed, except those committed rows point at."""
    kept = _referenced(archive, [target.name for target in placed])
    for target in placed:
        if target.name in kept:
            log.warning("import: keeping %s: another process indexed it meanwhile",
                        target.name)
            continue
        archive.store.unpublish(target)
        target.unlink(missing_ok=True)


def _failure(exc: Exception) -> StorageError:
    """One line for an import that failed on something other than its input."""
    reason = (str(getattr(exc, "orig", None) or exc) or type(exc).__name__).splitlines()[0]
    if isinstance(exc, IntegrityError):
        reason = f"another process indexed the same WARC records meanwhile ({reason})"
    return StorageError(f"import failed, nothing was imported: {reason}")


def import_files(archive: Archive, paths: list[Path]) -> ImportSummary:
    """Import WARC and WACZ files made by other tools; all of them or, on any error, none.

    Every response, revisit and resource record is indexed.  Imported captures belong to the
    archive's existing links through their URL key; links are not created for URLs the
    archive does not already track.  A file whose records are all indexed already is skipped;
    one whose bytes are already in the folder (same sha256) but not all indexed (an import
    killed before it committed, a file copied there by hand) has the missing records indexed
    where it lies, without a second copy.  The imports of one data folder run one at a time.
    """
    folder = archive.store.directory
    folder.mkdir(parents=True, exist_ok=True)
    with _import_lock(archive.settings.data_dir / LOCK_FILE):
        return _import_locked(archive, paths, folder)


def _import_locked(archive: Archive, paths: list[Path], folder: Path) -> ImportSummary:
    """``import_files`` under the import lock."""
    staged: list[_Staged] = []
    try:
        for path in paths:
            staged += _stage(Path(path), folder)
    except BaseException:
        _discard(staged)
        raise

    summary = ImportSummary()
    local = archive.store.local_files()
    known = _KnownFiles(folder, local)
    # Uploaded files are not hashed again: their records are found in the index instead.
    remote_names = set(archive.store.files()) - set(local)
    seen: set[str] = set()
    placed: list[Path] = []
    # Files already in the folder (a crash before the index commit, a copy by hand): their
    # records are indexed where they lie, if the index lacks them.
    present: list[Path] = []
    sources: dict[Path, str] = {}
    try:
        for item in staged:
            size = item.temp.stat().st_size
            existing = known.find(size, item.sha256)
            if item.sha256 in seen or existing is not None:
                if existing is not None and existing not in present:
                    present.append(existing)
                    sources[existing] = item.source
                else:
                    summary.skipped.append(item.source)
                item.temp.unlink()
                continue
            seen.add(item.sha256)
            target = _stored_name(item.base_name, item.gzipped, folder, remote_names)
            placed.append(target)
            sources[target] = item.source
            # The store's mode (as its own files get under the umask), not the temporary
            # file's 0600: a web process of another user reads the folder.
            os.chmod(item.temp, stat.S_IMODE(target.stat().st_mode))
            os.replace(item.temp, target)
        keys: set[str] = set()
        with archive.db.session() as session:
            for existing in present:
                locations, _total = _new_locations(session, archive, existing.name)
                if not locations:
                    summary.skipped.append(sources[existing])
                    continue
                log.warning("import: %s is already in the WARC folder as %s but %d of its "
                            "records were not indexed; indexing them", sources[existing],
                            existing.name, len(locations))
                summary.records += index_locations(session, locations)
                keys.update(location.url_key for location in locations)
                summary.imported.append(existing.name)
            for target in list(placed):
                locations, total = _new_locations(session, archive, target.name)
                if total and not locations:  # every record is in the index already
                    summary.skipped.append(sources[target])
                    target.unlink()
                    placed.remove(target)
                    continue
                summary.records += index_locations(session, locations)
                keys.update(location.url_key for location in locations)
                summary.imported.append(target.name)
            for target in placed:  # uploaded before the index rows pointing at them commit
                archive.store.publish(target)
            key_list = sorted(keys)
            for start in range(0, len(key_list), _BATCH):
                summary.links += len(set(session.scalars(select(Link.url_key).where(
                    Link.url_key.in_(key_list[start:start + _BATCH])))))
    except BaseException as exc:
        _undo_placing(archive, placed)
        _discard(staged)
        if isinstance(exc, ArchiverError) or not isinstance(exc, Exception):
            raise
        raise _failure(exc) from exc
    return summary
