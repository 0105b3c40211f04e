"""Bring WARC files made by other tools (wget, pywb, Browsertrix, ArchiveWeb.page) into the
archive: ``.warc``, ``.warc.gz`` and ``.wacz`` files.

Each WARC is checked record by record before anything is kept (every record readable, and
every declared block and payload digest matching its bytes, as ``archiver verify`` checks
them), copied into the WARC folder as ``imported-<original name>`` (never overwriting a file)
and indexed.  An import is all or
nothing: when any input is bad, no file is left in the folder and no row in the index.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver.archive import Archive
from archiver.capture import index_locations
from archiver.errors import ArchiverError, StorageError
from archiver.models import Capture, Link
from archiver.net.content import GZIP_MAGIC
from archiver.warc.reader import ScanError, scan_warc
from archiver.warc.records import RecordLocation

IMPORT_PREFIX = "imported-"
ZIP_MAGIC = b"PK\x03\x04"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_BATCH = 500

log = logging.getLogger(__name__)


@dataclass
class ImportSummary:
    """What one import did: files kept, files already present, index rows added."""

    imported: list[str] = field(default_factory=list)  # new file names in the WARC folder
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


def _check_records(path: Path, source: str) -> int:
    """Count a staged WARC's records, refusing it at the first one whose declared block or
    payload digest does not match its bytes (the checks ``archiver verify`` makes)."""
    count = 0
    for scanned in scan_warc(path):
        count += 1
        check = scanned.record.digests
        if not (check.mismatches or check.unchecked):
            continue
        where = (f"{scanned.record.rec_type or 'untyped'} record for "
                 f"{scanned.record.target_uri or '(no WARC-Target-URI)'} at byte "
                 f"{scanned.offset}")
        if check.mismatches:
            raise StorageError(f"{source}: {where}: {'; '.join(check.mismatches)} "
                               "(damaged or altered; the file was refused)")
        for note in check.unchecked:
            log.warning("import: %s: %s: %s", source, where, note)
    return count


def _stage_stream(stream: IO[bytes], source: str, base_name: str, folder: Path) -> _Staged:
    """Copy a WARC into a temporary file in ``folder`` and check every record of it."""
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".import-", suffix=".tmp",
                                     delete=False) as out:
        temp = Path(out.name)
        try:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
        except BaseException as exc:
            out.close()
            temp.unlink(missing_ok=True)
            if isinstance(exc, OSError | zipfile.BadZipFile | EOFError | zlib.error):
                raise StorageError(f"{source}: cannot read it: {exc}") from exc
            raise
    staged = _Staged(source, base_name, temp, digest.hexdigest(), gzipped=False)
    try:
        with open(temp, "rb") as handle:
            head = handle.read(5)
        if not (head.startswith(GZIP_MAGIC) or head == b"WARC/"):
            raise StorageError(f"{source}: not a WARC file")
        staged.gzipped = head.startswith(GZIP_MAGIC)
        if _check_records(temp, source) == 0:
            raise StorageError(f"{source}: holds no WARC records")
    except ScanError as exc:
        temp.unlink(missing_ok=True)
        hint = " (recompress it record by record, e.g. with `warcio recompress`)" \
            if "more than one record" in exc.reason else ""
        raise StorageError(f"{source}: not a readable WARC file: {exc}{hint}") from exc
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return staged


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
                with package.open(info) as stream:
                    item = _stage_stream(stream, source, PurePosixPath(info.filename).name,
                                         folder)
                staged.append(item)
                expected = declared.get(info.filename, "")
                if expected.startswith("sha256:") and expected[7:].lower() != item.sha256:
                    raise StorageError(f"{source}: does not match the hash in datapackage.json")
        except BaseException:
            _discard(staged)
            raise
    return staged


def _stage(path: Path, folder: Path) -> list[_Staged]:
    """Stage one input: a WARC file, or the WARCs of a WACZ."""
    if not path.is_file():
        raise StorageError(f"{path}: no such file")
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

    def has(self, size: int, sha256: str) -> bool:
        """Whether a file of this size and hash is already in the folder."""
        for path in self.by_size.get(size, []):
            if path not in self.hashes:
                self.hashes[path] = _file_sha256(path)
            if self.hashes[path] == sha256:
                return True
        return False


def _new_locations(session: Session, archive: Archive,
                   name: str) -> tuple[list[RecordLocation], int]:
    """Index facts of a placed file's records that the index lacks, and how many it has."""
    locations = [location for location in archive.store.iter_locations(name) if location.url]
    ids = [location.record_id for location in locations if location.record_id]
    known: set[str] = set()
    for start in range(0, len(ids), _BATCH):
        known.update(session.scalars(select(Capture.record_id).where(
            Capture.record_id.in_(ids[start:start + _BATCH]))))
    fresh = [location for location in locations
             if not location.record_id or location.record_id not in known]
    return fresh, len(locations)


def import_files(archive: Archive, paths: list[Path]) -> ImportSummary:
    """Import WARC and WACZ files made by other tools; all of them or, on any error, none.

    Every response, revisit and resource record is indexed.  Imported captures belong to the
    archive's existing links through their URL key; links are not created for URLs the
    archive does not already track.  A file whose bytes are already in the folder (same
    sha256), or whose records are all indexed already, is skipped.
    """
    folder = archive.store.directory
    folder.mkdir(parents=True, exist_ok=True)
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
    sources: dict[Path, str] = {}
    try:
        for item in staged:
            size = item.temp.stat().st_size
            if item.sha256 in seen or known.has(size, item.sha256):
                summary.skipped.append(item.source)
                item.temp.unlink()
                continue
            seen.add(item.sha256)
            target = _stored_name(item.base_name, item.gzipped, folder, remote_names)
            placed.append(target)
            sources[target] = item.source
            os.replace(item.temp, target)
        keys: set[str] = set()
        with archive.db.session() as session:
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
        for target in placed:
            archive.store.unpublish(target)
            target.unlink(missing_ok=True)
        _discard(staged)
        if isinstance(exc, ArchiverError) or not isinstance(exc, Exception):
            raise
        raise StorageError(f"import failed, nothing was imported: {exc}") from exc
    return summary
