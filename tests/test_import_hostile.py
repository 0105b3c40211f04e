"""Hostile or odd input to ``archiver import`` and ``archiver reindex``: a zip bomb, a file
already in the WARC folder but not indexed, damaged files at reindex, segmented records, URIs
with spaces or none, records the index cannot keep, and the imported files' mode and
datapackage.json hashes.  Real files, real SQLite, the real CLI.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
from sqlalchemy import select

from archiver.archive import Archive
from archiver.errors import StorageError
from archiver.models import Capture
from archiver.warc.importer import import_files
from archiver.warc.indexer import reindex
from archiver.warc.verify import verify
from tests.test_import_digests import BASE, DATE, SITE, record_offset, write_warc
from tests.test_warc_tools import invoke


def raw_record(headers: dict[str, str], block: bytes, *, gzipped: bool = False,
               record_type: str = "response") -> bytes:
    """One WARC record written by hand (no digests), so any header can be wrong or absent."""
    lines = ["WARC/1.1", f"WARC-Type: {record_type}",
             *(f"{name}: {value}" for name, value in headers.items()),
             f"Content-Length: {len(block)}", "", ""]
    data = "\r\n".join(lines).encode() + block + b"\r\n\r\n"
    return gzip.compress(data) if gzipped else data


def http_block(body: bytes, status: str = "200 OK") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: text/html\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def response(uri: str | None, number: int, *, date: str | None = DATE,
             status: str = "200 OK", extra: dict[str, str] | None = None,
             gzipped: bool = False) -> bytes:
    headers = {"WARC-Record-ID": f"<urn:uuid:00000000-0000-4000-8000-9{number:011d}>"}
    if uri is not None:
        headers["WARC-Target-URI"] = uri
    if date is not None:
        headers["WARC-Date"] = date
    headers["Content-Type"] = "application/http; msgtype=response"
    headers.update(extra or {})
    return raw_record(headers, http_block(f"<p>{number}</p>".encode(), status),
                      gzipped=gzipped)


def rows(archive: Archive) -> list[tuple[str, str, int]]:
    with archive.db.session() as session:
        return sorted((c.url, c.warc_file, c.offset) for c in session.scalars(select(Capture)))


def temp_files(archive: Archive) -> list[str]:
    return [name for name in os.listdir(archive.store.directory) if name.startswith(".import-")]


# -- 3. reindex with damaged files -----------------------------------------------------------

def damaged_archive(archive: Archive, tmp_path: Path) -> tuple[Path, int]:
    """Two imported files; the second gets a damaged second record.  Its path and offset."""
    good = write_warc(tmp_path / "good.warc.gz", SITE, gzipped=True, tag="b")
    bad = write_warc(tmp_path / "bad.warc.gz", SITE, gzipped=True, tag="c")
    assert import_files(archive, [good, bad]).records == 6
    stored = archive.store.directory / "imported-bad.warc.gz"
    offset = record_offset(stored, BASE + "/style.css")
    data = bytearray(stored.read_bytes())
    for at in range(offset + 20, offset + 40):
        data[at] ^= 0x55
    stored.write_bytes(bytes(data))
    return stored, offset


def test_reindex_keeps_every_readable_record_and_names_the_damage(archive: Archive,
                                                                   tmp_path: Path) -> None:
    _stored, offset = damaged_archive(archive, tmp_path)
    code, _, err = invoke(archive, "reindex")
    assert code == StorageError.exit_code, err
    assert f"imported-bad.warc.gz: not readable as WARC from byte {offset}" in err, err
    assert "4 records indexed" in err and "Traceback" not in err, err
    found = rows(archive)
    assert [u for u, f, _ in found if f == "imported-good.warc.gz"] == \
        sorted(BASE + path for path, _, _ in SITE)
    assert [u for u, f, _ in found if f == "imported-bad.warc.gz"] == [BASE + "/article.html"]


def test_reindex_reports_a_truncated_tail(archive: Archive, tmp_path: Path) -> None:
    source = write_warc(tmp_path / "site.warc.gz", SITE, gzipped=True)
    import_files(archive, [source])
    stored = archive.store.directory / "imported-site.warc.gz"
    last = record_offset(stored, BASE + "/pixel.png")
    os.truncate(stored, stored.stat().st_size - 10)
    with pytest.raises(StorageError, match=f"imported-site.warc.gz: not readable as WARC from "
                                           f"byte {last} .*partial tail"):
        reindex(archive)
    assert len(rows(archive)) == 2


def test_reindex_names_a_non_warc_file_and_a_record_without_a_date(archive: Archive,
                                                                    tmp_path: Path) -> None:
    import_files(archive, [write_warc(tmp_path / "site.warc", SITE)])
    folder = archive.store.directory
    (folder / "junk.warc").write_bytes(b"this is not a WARC file\n" * 10)
    undated = response(BASE + "/undated", 1, date=None) + response(BASE + "/dated", 2)
    (folder / "undated.warc").write_bytes(undated)
    code, _, err = invoke(archive, "reindex")
    assert code == StorageError.exit_code and "Traceback" not in err, err
    assert "junk.warc: not readable as WARC from byte 0" in err, err
    assert "undated.warc@0: record without a WARC-Date" in err, err
    assert sorted(u for u, _, _ in rows(archive)) == \
        sorted([BASE + "/dated"] + [BASE + path for path, _, _ in SITE])


# -- 5. the URI of a record: one rule ---------------------------------------------------------

def test_uri_with_a_space_and_an_empty_uri(archive: Archive, tmp_path: Path) -> None:
    path = tmp_path / "odd-uris.warc"
    path.write_bytes(response(BASE + "/with space.html", 1) + response("", 2)
                     + response(BASE + "/plain.html", 3))
    assert import_files(archive, [path]).records == 2
    imported = rows(archive)
    assert [u for u, _, _ in imported] == [BASE + "/plain.html", BASE + "/with%20space.html"]
    assert verify(archive) == []
    assert reindex(archive) == 2
    assert rows(archive) == imported
    assert verify(archive) == []

