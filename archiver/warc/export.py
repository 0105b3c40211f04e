"""Hand the archive to other tools: a CDXJ index (pywb's format) and WACZ 1.1.1 packages
(ReplayWeb.page, py-wacz), of the whole archive or of the references of one post.

A per-post package stands alone: its WARC holds the records of the captures of the links the
post cites, of their requisites (what replay of those pages loads), of the captures their
redirects lead to, and of the responses their revisits repeat.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import io
import json
import os
import re
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from warcio.warcwriter import WARCWriter

from archiver.archive import SECRET_KEY_FILE, Archive
from archiver.clock import utcnow, warc_timestamp
from archiver.errors import ArchiverError, MissingFileError, StorageError
from archiver.fingerprint import HTML_TYPES, TEXT_READ_BYTES
from archiver.models import Capture, Citation, Link, Post
from archiver.net.content import charset_of, decode_text
from archiver.replay.lookup import nearest_capture, original_response, redirect_target
from archiver.replay.rewrite import embedded_urls_css, embedded_urls_html
from archiver.warc.records import GZIP_LEVEL
from archiver.warc.store import SOFTWARE, WARC_VERSION, WarcStore, open_record
from archiver.warc.verify import read_indexed
from archiver.wording import plural

WACZ_VERSION = "1.1.1"
INDEX_PATH = "indexes/index.cdxj"
PAGES_PATH = "pages/pages.jsonl"
_TITLE_RE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.I | re.S)
_RESOURCE_NAME = re.compile(r"[^-a-z0-9._/]+")
_ZIP64_AT = (1 << 31) - 1


@dataclass(frozen=True)
class CdxjEntry:
    """One index line: a capture and where its record is (file, offset, length)."""

    capture: Capture
    filename: str
    offset: int
    length: int

    def line(self) -> str:
        """``<surt> <timestamp> {json}`` with the field names pywb writes and reads."""
        capture = self.capture
        fields: dict[str, str] = {"url": capture.url}
        mime = "warc/revisit" if capture.record_type == "revisit" else capture.mime
        if mime:
            fields["mime"] = mime
        if capture.status is not None:
            fields["status"] = str(capture.status)
        if capture.payload_digest:
            fields["digest"] = capture.payload_digest.removeprefix("sha1:")
        fields.update(length=str(self.length), offset=str(self.offset), filename=self.filename)
        return f"{capture.url_key} {warc_timestamp(capture.captured_at)} {json.dumps(fields)}"


@dataclass
class ExportSummary:
    """What an export wrote."""

    path: Path
    records: int
    warc_files: int = 0
    pages: int = 0

    def line(self) -> str:
        """One-line summary for the CLI."""
        parts = plural(self.records, "record")
        if self.warc_files:
            parts += f", {plural(self.warc_files, 'WARC file')}, {plural(self.pages, 'page')}"
        return f"export: {self.path} ({parts})"


def sorted_lines(entries: Iterable[CdxjEntry]) -> list[str]:
    """CDXJ lines in the order pywb's binary search needs: by key, then timestamp."""
    return sorted(entry.line() for entry in entries)


# -- choosing captures -----------------------------------------------------------------------

def _post(session: Session, post_id: int) -> Post:
    post = session.get(Post, post_id)
    if post is None:
        raise ArchiverError(f"no post #{post_id}")
    return post


def _cited_links(session: Session, post_id: int | None) -> list[Link]:
    query = select(Link).where(Link.citations.any()).order_by(Link.url)
    if post_id is not None:
        query = query.where(Link.citations.any(Citation.post_id == post_id))
    return list(session.scalars(query))


def _payload_text(session: Session, store: WarcStore, capture: Capture) -> str | None:
    """The decoded text of an HTML or CSS capture (a revisit's from the record it repeats)."""
    original = original_response(session, capture)
    if original is None:
        return None
    capture = original
    try:
        record = open_record(store.read_record_bytes(capture.warc_file, capture.offset,
                                                     capture.length))
        body = record.content_stream().read(TEXT_READ_BYTES)
    except Exception:  # unreadable records are verify's business; export what can be read
        return None
    headers = record.http_headers
    content_type = (headers.get_header("Content-Type") if headers is not None else None) or ""
    return decode_text(body, charset_of(content_type, body))


def _embedded(session: Session, store: WarcStore, capture: Capture, depth: int) -> list[str]:
    """What an archived page or style sheet loads to render (pages: the cited one and the
    documents of its iframes, as captures fetch them)."""
    if capture.status is None or not 200 <= capture.status < 300:
        return []
    if capture.mime == "text/css":
        text = _payload_text(session, store, capture)
        return embedded_urls_css(text, capture.url) if text else []
    if capture.mime in HTML_TYPES and depth <= 1:
        text = _payload_text(session, store, capture)
        return embedded_urls_html(text, capture.url) if text else []
    return []


def post_captures(session: Session, store: WarcStore, post_id: int) -> list[Capture]:
    """Captures of the links a post cites, with what they need to replay on their own: the
    records their revisits repeat, where their redirects lead, and their requisites."""
    _post(session, post_id)
    keys = sorted({link.url_key for link in _cited_links(session, post_id)})
    cited: list[Capture] = list(session.scalars(select(Capture).where(
        Capture.url_key.in_(keys)))) if keys else []
    queue = [(capture, 0) for capture in cited]
    chosen: dict[int, Capture] = {}
    while queue:
        capture, depth = queue.pop()
        if capture.id in chosen:
            continue
        chosen[capture.id] = capture
        if capture.record_type == "revisit" and capture.payload_digest:
            original = original_response(session, capture)
            if original is not None:
                queue.append((original, depth))
        if capture.status is not None and 300 <= capture.status < 400:
            target = redirect_target(store, capture)
            following = nearest_capture(session, target, capture.captured_at) \
                if target else None
            if following is not None:
                queue.append((following, depth))
        for url in _embedded(session, store, capture, depth):
            requisite = nearest_capture(session, url, capture.captured_at)
            if requisite is not None:
                queue.append((requisite, depth + 1))
    return sorted(chosen.values(), key=lambda c: (c.warc_file, c.offset))


def _all_captures(session: Session) -> list[Capture]:
    return list(session.scalars(select(Capture).order_by(Capture.warc_file, Capture.offset)))


# -- where export writes, and what it reads ---------------------------------------------------

class OutputError(ArchiverError):
    """An output path export will not write to (a usage error)."""

    exit_code = 2


def check_output(out_path: Path, archive: Archive) -> None:
    """Refuse an output path that is not, or would not become, a regular file outside the
    WARC folder: export replaces what is there, and must not replace a device, pipe, folder
    or symbolic link (refused, not followed: give the file itself), nor put a file among the
    archive's own WARC files (reindex would read it as one), nor replace its database or its
    secret key."""
    warc_dir = archive.store.directory
    try:
        mode: int | None = os.lstat(out_path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and stat.S_ISLNK(mode):
        raise OutputError(f"{out_path} is a symbolic link: give the file it points at")
    if mode is not None and not stat.S_ISREG(mode):
        raise OutputError(f"{out_path} exists and is not a regular file: export replaces "
                          "regular files only")
    resolved, folder = out_path.resolve(), warc_dir.resolve()
    if resolved == folder or resolved.is_relative_to(folder):
        raise OutputError(f"{out_path} is inside the WARC folder {warc_dir}: write the export "
                          "elsewhere")
    database = archive.db.engine.url.database if archive.db.engine.url.get_backend_name() \
        == "sqlite" else None
    if database and resolved in {Path(database + suffix).resolve()
                                 for suffix in ("", "-wal", "-shm", "-journal")}:
        raise OutputError(f"{out_path} is the archive's database: write the export elsewhere")
    if resolved == (archive.settings.data_dir / SECRET_KEY_FILE).resolve():
        raise OutputError(f"{out_path} is the archive's secret key: write the export elsewhere")


def check_files(store: WarcStore, captures: Iterable[Capture]) -> None:
    """Refuse (MissingFileError) when a WARC file the captures are in is nowhere to be found:
    the export would point at records it does not hold."""
    missing = sorted({c.warc_file for c in captures} - set(store.files()))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5
                                          else "")
        raise MissingFileError(f"{len(missing)} WARC file(s) the index refers to are missing: "
                               f"{shown} (archiver verify lists what is lost)")


# -- CDXJ --------------------------------------------------------------------------------------

def _write_atomically(out_path: Path, write: Any) -> None:
    """Write through ``write(handle)`` into a temporary file, then put it in place."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    temp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    try:
        with open(temp, "wb") as handle:
            write(handle)
        os.replace(temp, out_path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def export_cdxj(archive: Archive, out_path: Path, post_id: int | None = None) -> ExportSummary:
    """Write a sorted CDXJ index of the archive (or of one post's captures) for pywb.

    Filenames are relative to the WARC folder. Refused (nothing written): an output path
    :func:`check_output` refuses, and captures whose WARC file is missing.
    """
    out_path = Path(out_path)
    check_output(out_path, archive)
    with archive.db.session() as session:
        captures = (_all_captures(session) if post_id is None
                    else post_captures(session, archive.store, post_id))
    check_files(archive.store, captures)
    lines = sorted_lines(CdxjEntry(c, c.warc_file, c.offset, c.length) for c in captures)

    def write(handle: IO[bytes]) -> None:
        handle.writelines((line + "\n").encode("utf-8") for line in lines)

    _write_atomically(out_path, write)
    return ExportSummary(path=out_path, records=len(lines))


# -- WACZ --------------------------------------------------------------------------------------

def _page_title(session: Session, store: WarcStore, capture: Capture) -> str | None:
    """The <title> of an archived HTML page, if it has one."""
    if capture.mime not in HTML_TYPES:
        return None
    text = _payload_text(session, store, capture)
    match = _TITLE_RE.search(text) if text else None
    title = " ".join(html.unescape(match.group(1)).split()) if match else ""
    return title[:500] or None


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _pages(session: Session, store: WarcStore, captures: list[Capture],
           post_id: int | None) -> list[dict[str, str]]:
    """One page per cited link with a capture: its latest good capture (else its latest)."""
    by_key: dict[str, list[Capture]] = {}
    for capture in captures:
        if capture.record_type in {"response", "revisit", "resource"}:
            by_key.setdefault(capture.url_key, []).append(capture)
    pages = []
    for link in _cited_links(session, post_id):
        candidates = by_key.get(link.url_key)
        if not candidates:
            continue
        best = max(candidates, key=lambda c: (c.status is not None and c.status < 400,
                                              c.captured_at))
        page = {"id": hashlib.sha1(f"{best.url} {best.captured_at}".encode(),
                                   usedforsecurity=False).hexdigest()[:24],
                "url": best.url, "ts": _iso(best.captured_at)}
        anchor = next((c.anchor_text for c in link.citations
                       if c.anchor_text and (post_id is None or c.post_id == post_id)), None)
        title = _page_title(session, store, best) or anchor
        if title:
            page["title"] = title
        pages.append(page)
    return pages


def _warcinfo(name: str, post: Post) -> bytes:
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=True, warc_version=WARC_VERSION)
    writer.write_record(writer.create_warcinfo_record(name, {
        "software": SOFTWARE,
        "format": "WARC File Format 1.1",
        "description": f"References cited by {post.url}",
    }))
    return buffer.getvalue()


def _post_warc(store: WarcStore, captures: list[Capture], post: Post,
               handle: IO[bytes], name: str) -> list[CdxjEntry]:
    """Write a WARC of just these captures' records; return their places in it."""
    handle.write(_warcinfo(name, post))
    entries = []
    for capture in captures:
        offset = handle.tell()
        _copy_record(store, capture, handle)
        entries.append(CdxjEntry(capture, name, offset, handle.tell() - offset))
    return entries


def _copy_record(store: WarcStore, capture: Capture, handle: IO[bytes]) -> None:
    """Copy the record a capture row points at into ``handle`` as one gzip member, chunk by
    chunk (a record may be larger than memory)."""
    if capture.warc_file.endswith(".gz"):
        length = capture.length
        compress = None
    else:  # from an uncompressed file: the record with its trailer, gzipped on the way
        try:
            _record, length = read_indexed(store, capture, check=False)
        except StorageError:
            length = capture.length  # unreadable records are verify's business
        compress = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    copied = 0
    with store.open_range(capture.warc_file, capture.offset, length) as source:
        while chunk := source.read(1 << 20):
            copied += len(chunk)
            handle.write(compress.compress(chunk) if compress else chunk)
    if compress:
        handle.write(compress.flush())
    if copied != length:
        raise StorageError(f"{capture.warc_file}@{capture.offset}: record is cut short")


class _Package:
    """A WACZ being written: every entry's path, sha256 and size, for datapackage.json."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.zip = zipfile.ZipFile(handle, "w", allowZip64=True)
        self.resources: list[dict[str, Any]] = []
        now = utcnow()
        self.stamp = (now.year, now.month, now.day, now.hour, now.minute, now.second)

    def __enter__(self) -> _Package:
        return self

    def __exit__(self, kind: type[BaseException] | None, _error: BaseException | None,
                 _trace: TracebackType | None) -> None:
        if kind is not None:
            # A failed package's file is thrown away; its zip is closed now, while that file
            # is open, or collecting it later writes to the closed file and Python prints a
            # second error after the one-line message.
            with contextlib.suppress(Exception):
                self.zip.close()

    def add(self, path: str, source: IO[bytes], stored: bool, size: int = 0) -> None:
        """Add an entry from a stream; WARCs are stored, the rest deflated."""
        info = zipfile.ZipInfo(path, date_time=self.stamp)
        info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
        digest, total = hashlib.sha256(), 0
        with self.zip.open(info, "w", force_zip64=size >= _ZIP64_AT) as out:
            for chunk in iter(lambda: source.read(1 << 20), b""):
                digest.update(chunk)
                total += len(chunk)
                out.write(chunk)
        name = _RESOURCE_NAME.sub("-", path.rsplit("/", 1)[-1].lower())
        self.resources.append({"name": name, "path": path,
                               "hash": f"sha256:{digest.hexdigest()}", "bytes": total})

    def add_bytes(self, path: str, data: bytes) -> None:
        """Add a small entry held in memory."""
        self.add(path, io.BytesIO(data), stored=False)

    def finish(self, title: str) -> None:
        """Write datapackage.json and its digest, and close the zip."""
        now = _iso(utcnow())
        package = {"profile": "data-package", "wacz_version": WACZ_VERSION, "title": title,
                   "software": SOFTWARE, "created": now, "modified": now,
                   "resources": self.resources}
        data = json.dumps(package, indent=2).encode("utf-8")
        info = zipfile.ZipInfo("datapackage.json", date_time=self.stamp)
        info.compress_type = zipfile.ZIP_DEFLATED
        self.zip.writestr(info, data)
        digest = {"path": "datapackage.json", "hash": f"sha256:{hashlib.sha256(data).hexdigest()}"}
        info = zipfile.ZipInfo("datapackage-digest.json", date_time=self.stamp)
        info.compress_type = zipfile.ZIP_DEFLATED
        self.zip.writestr(info, json.dumps(digest, indent=2).encode("utf-8"))
        self.zip.close()


def _pages_jsonl(pages: list[dict[str, str]], title: str) -> bytes:
    header = {"format": "json-pages-1.0", "id": "pages", "title": title}
    return "".join(json.dumps(item) + "\n" for item in [header, *pages]).encode("utf-8")


def export_wacz(archive: Archive, out_path: Path, post_id: int | None = None) -> ExportSummary:
    """Write a WACZ 1.1.1 package of the whole archive, or of the references of one post.

    Refused (nothing written): an output path :func:`check_output` refuses, and captures
    whose WARC file is missing (the package's index would point outside it).
    """
    store = archive.store
    out_path = Path(out_path)
    check_output(out_path, archive)
    with archive.db.session() as session:
        if post_id is None:
            post = None
            captures = _all_captures(session)
            title = "link-archiver: every capture"
        else:
            post = _post(session, post_id)
            captures = post_captures(session, store, post_id)
            title = f"link-archiver: references of {post.title or post.url}"
        check_files(store, captures)
        pages = _pages(session, store, captures, post_id)
    summary = ExportSummary(path=out_path, records=len(captures), pages=len(pages))

    def write(handle: IO[bytes]) -> None:
        with _Package(handle) as package:
            fill(package)

    def fill(package: _Package) -> None:
        if post is None:
            names = store.files()
            for name in names:
                with store.local_copy(name) as path, open(path, "rb") as source:
                    package.add(f"archive/{name}", source, stored=True,
                                size=path.stat().st_size)
            entries = [CdxjEntry(c, c.warc_file, c.offset, c.length) for c in captures]
        else:
            names = [f"post-{post.id}-{utcnow().strftime('%Y%m%d%H%M%S')}.warc.gz"]
            with tempfile.TemporaryFile() as warc:
                entries = _post_warc(store, captures, post, warc, names[0])
                size = warc.tell()
                warc.seek(0)
                package.add(f"archive/{names[0]}", warc, stored=True, size=size)
        summary.warc_files = len(names)
        lines = sorted_lines(entries)
        package.add_bytes(INDEX_PATH, "".join(line + "\n" for line in lines).encode("utf-8"))
        package.add_bytes(PAGES_PATH, _pages_jsonl(pages, title))
        package.finish(title)

    _write_atomically(out_path, write)
    return summary
