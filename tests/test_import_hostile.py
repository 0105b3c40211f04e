"""Hostile or odd input to ``archiver import`` and ``archiver reindex``: a zip bomb, a file
already in the WARC folder but not indexed, damaged files at reindex, segmented records, URIs
with spaces or none, records the index cannot keep, and the imported files' mode and
datapackage.json hashes.  Real files, real SQLite, the real CLI.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
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
from tests.test_warc_tools import cli_env, invoke, snapshot


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


# -- 1. a zip bomb ---------------------------------------------------------------------------

def test_wacz_zip_bomb_is_refused_before_it_is_unpacked(archive: Archive,
                                                        tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.wacz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr("archive/bomb.warc", b"WARC/1.1\r\n" + bytes(8 << 20))
    assert bomb.stat().st_size < 100_000
    before = snapshot(archive)
    code, _, err = invoke(archive, "import", str(bomb))
    assert code == StorageError.exit_code and "archive/bomb.warc" in err, err
    assert "zip bomb" in err and "8388618 bytes" in err, err
    assert snapshot(archive) == before


def test_garbage_is_refused_within_its_first_bytes(archive: Archive, tmp_path: Path) -> None:
    """A stored (ratio 1) entry of zeros with a bad CRC at its very end: checking while
    copying stops at the headers; copying it all first would reach the bad CRC."""
    wacz = tmp_path / "zeros.wacz"
    with zipfile.ZipFile(wacz, "w", zipfile.ZIP_STORED) as package:
        package.writestr("archive/zeros.warc", b"WARC/1.1\r\n" + bytes(4 << 20))
    data = bytearray(wacz.read_bytes())
    data[data.index(b"WARC/1.1\r\n") + 10 + (4 << 20) - 1] = 1  # last byte of the entry
    wacz.write_bytes(bytes(data))
    before = snapshot(archive)
    with pytest.raises(StorageError, match="WARC headers too long"):
        import_files(archive, [wacz])
    assert snapshot(archive) == before


def test_an_input_that_is_not_a_file_is_named_for_what_it_is(archive: Archive,
                                                             tmp_path: Path) -> None:
    """A folder and /dev/null were each refused as "no such file"."""
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    cases = {crawl: "is a folder: give the WARC or WACZ files in it",
             Path("/dev/null"): "is not a regular file (a device, pipe or socket)",
             tmp_path / "absent.warc": "no such file"}
    for given, said in cases.items():
        code, _, err = invoke(archive, "import", str(given))
        assert code == StorageError.exit_code and err.startswith(f"error: {given}: {said}"), err


# -- 2. bytes already in the folder, records not indexed -------------------------------------

@pytest.mark.parametrize("name", ["imported-site.warc.gz", "copied-by-hand.warc.gz"])
def test_file_in_folder_but_not_indexed_is_indexed_in_place(archive: Archive, tmp_path: Path,
                                                            name: str) -> None:
    """A kill -9 after the file was moved in but before the index commit (the name an import
    gives it), or a copy made by hand: importing it indexes it, with no second copy."""
    source = write_warc(tmp_path / "site.warc.gz", SITE, gzipped=True)
    archive.store.directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, archive.store.directory / name)
    code, _, err = invoke(archive, "import", str(source))  # the CLI says it on stderr
    assert code == 0, err
    assert "already in the archive" not in err and "3 records indexed" in err, err
    assert sorted(os.listdir(archive.store.directory)) == [name]
    assert [url for url, _, _ in rows(archive)] == sorted(BASE + path for path, _, _ in SITE)
    assert verify(archive) == []
    code, _, err = invoke(archive, "import", str(source))  # now it is: skipped
    assert code == 0 and "already in the archive" in err and "0 records indexed" in err, err


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
    # The whole record after the damage, where the imported copy's bytes are undamaged.
    after = record_offset(tmp_path / "bad.warc.gz", BASE + "/pixel.png")
    assert f"read on from byte {after}" in err, err
    assert "5 records indexed" in err and "Traceback" not in err, err
    found = rows(archive)
    assert [u for u, f, _ in found if f == "imported-good.warc.gz"] == \
        sorted(BASE + path for path, _, _ in SITE)
    assert [u for u, f, _ in found if f == "imported-bad.warc.gz"] == \
        [BASE + "/article.html", BASE + "/pixel.png"]


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


# -- 4. segmented records --------------------------------------------------------------------

def test_segmented_records_are_refused(archive: Archive, tmp_path: Path) -> None:
    path = tmp_path / "segmented.warc"
    first = response(BASE + "/big", 1, extra={"WARC-Segment-Number": "1"})
    rest = raw_record({"WARC-Record-ID": "<urn:uuid:00000000-0000-4000-8000-900000000002>",
                       "WARC-Date": DATE, "WARC-Target-URI": BASE + "/big",
                       "WARC-Segment-Origin-ID": "<urn:uuid:00000000-0000-4000-8000-900000000001>",
                       "WARC-Segment-Number": "2", "WARC-Segment-Total-Length": "99"},
                      b"more bytes", record_type="continuation")
    path.write_bytes(first + rest)
    before = snapshot(archive)
    code, _, err = invoke(archive, "import", str(path))
    assert code == StorageError.exit_code and str(path) in err, err
    assert "segmented record" in err and "not supported" in err, err
    assert len(err.strip().splitlines()) == 1
    assert snapshot(archive) == before


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


# -- 6. records the index cannot keep: clear errors at import ----------------------------------

@pytest.mark.parametrize(("record", "problem"), [
    (response(BASE + "/a", 1, date=None), "record without a WARC-Date"),
    (response(BASE + "/a", 1, date="yesterday"), "WARC-Date 'yesterday' is not a date"),
    (response(BASE + "/a", 1, status="99999999999999999999 Huge"),
     "HTTP status '99999999999999999999' is not a three-digit code"),
])
def test_records_the_index_cannot_keep_are_refused_naming_the_file(
        archive: Archive, tmp_path: Path, record: bytes, problem: str) -> None:
    path = tmp_path / "date-bad.warc.gz"
    path.write_bytes(gzip.compress(response(BASE + "/fine", 0)) + gzip.compress(record))
    before = snapshot(archive)
    code, _, err = invoke(archive, "import", str(path))
    assert code == StorageError.exit_code, err
    assert str(path) in err and problem in err and BASE + "/a" in err, err
    assert "imported-" not in err and "archiver verify" not in err, err
    assert snapshot(archive) == before


# -- 7. mode of the imported files, datapackage.json hashes ------------------------------------

def test_imported_files_get_the_stores_mode(archive: Archive, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        import_files(archive, [write_warc(tmp_path / "site.warc", SITE)])
    finally:
        os.umask(old)
    mode = stat.S_IMODE((archive.store.directory / "imported-site.warc").stat().st_mode)
    assert mode == 0o644


def wacz_with_hash(tmp_path: Path, declared: str) -> Path:
    warc = write_warc(tmp_path / "site.warc.gz", SITE, gzipped=True)
    wacz = tmp_path / "site.wacz"
    with zipfile.ZipFile(wacz, "w") as package:
        package.write(warc, "archive/site.warc.gz")
        package.writestr("datapackage.json", json.dumps({"resources": [
            {"path": "archive/site.warc.gz", "hash": declared}]}))
    return wacz


def test_datapackage_hash_prefix_in_any_case(archive: Archive, tmp_path: Path) -> None:
    wacz = wacz_with_hash(tmp_path, "SHA256:" + "0" * 64)
    before = snapshot(archive)
    with pytest.raises(StorageError, match=r"does not match the hash in datapackage\.json"):
        import_files(archive, [wacz])
    assert snapshot(archive) == before


def test_datapackage_hash_not_checked_is_warned(archive: Archive, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    wacz = wacz_with_hash(tmp_path, "md5:" + "0" * 32)
    with caplog.at_level(logging.WARNING, logger="archiver.warc.importer"):
        assert import_files(archive, [wacz]).records == 3
    assert any("md5:" in r.getMessage() and "not checked" in r.getMessage()
               for r in caplog.records)


# -- 8. two imports of one file at once --------------------------------------------------------

def child_env(values: dict[str, str]) -> dict[str, str]:
    """This process's environment without its ARCHIVER_ variables, plus ``values``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_")}, **values}


def import_process(source: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """``archiver import SOURCE`` in a process of its own, as a script (or its retry) runs it."""
    return subprocess.Popen([sys.executable, "-m", "archiver", "import", str(source)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@contextmanager
def stopped_in_its_insert(source: Path, env: dict[str, str], database: Path,
                          placed: Path) -> Iterator[subprocess.Popen[str]]:
    """An import of ``source`` that has moved it in as ``placed`` and waits for the database
    (another process holds its write lock), stopped there (SIGSTOP) with the database free;
    continued when the block ends."""
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    process = import_process(source, env)
    try:
        deadline = time.monotonic() + 20
        while not (placed.exists() and placed.stat().st_size == source.stat().st_size):
            assert time.monotonic() < deadline and process.poll() is None, process.stderr
            time.sleep(0.02)
        time.sleep(0.5)  # in its insert, waiting for the lock
        process.send_signal(signal.SIGSTOP)
        holder.execute("ROLLBACK")
        yield process
    finally:
        holder.close()
        process.send_signal(signal.SIGCONT)


def crawl_of(tmp_path: Path, count: int = 300) -> Path:
    pages = [(f"/p{n}.html", os.urandom(2000), "text/html") for n in range(count)]
    return write_warc(tmp_path / "crawl.warc.gz", pages, gzipped=True)


def test_two_imports_of_one_file_at_once_keep_the_file_the_index_points_at(
        archive: Archive, tmp_path: Path) -> None:
    """Import A moved the crawl into the WARC folder and waited for the database (a scheduler
    tick held it); import B of the same file, run meanwhile (a script's retry), found the bytes
    in the folder and indexed them where they lie; A then failed on B's rows and, undoing its
    import, deleted the file B's 300 rows point at.  Now B waits for A, then finds it done."""
    crawl = crawl_of(tmp_path)
    stored = archive.store.directory / "imported-crawl.warc.gz"
    env = child_env(cli_env(archive))
    with stopped_in_its_insert(crawl, env, archive.settings.data_dir / "archiver.sqlite3",
                               stored) as first:
        second = import_process(crawl, env)
        time.sleep(1.5)
        assert second.poll() is None, second.communicate()  # waiting for the first one
    _out, first_err = first.communicate(timeout=60)
    _out, second_err = second.communicate(timeout=60)
    assert first.returncode == 0, first_err
    assert second.returncode == 0, second_err
    assert "waiting for another import" in second_err, second_err
    assert "already in the archive" in second_err, second_err
    assert {name for _, name, _ in rows(archive)} == {stored.name} and len(rows(archive)) == 300
    assert verify(archive) == []
