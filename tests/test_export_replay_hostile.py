"""Hostile and odd inputs to replay and export: records the import accepts but replay cannot
answer as they are, output paths that are not plain files or lie in the WARC folder, missing
WARC files and damaged records.

WARC records are written byte by byte (as other tools write them, odd ones included), imported
with ``archiver import``'s code, and replayed through the Flask test client; exports run through
the CLI, in a subprocess where what Python prints at exit matters.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from archiver.archive import Archive
from archiver.demo.fixtureweb import Site
from archiver.warc.export import OutputError, export_cdxj, export_wacz
from archiver.warc.importer import import_files
from tests.test_memento import fetch, quiet_app, waitress_serving
from tests.test_warc_tools import (
    cli_env,
    filled,
    first_response,
    invoke,
    post_id,
    refs,
    snapshot,
    wacz_validate,
)

__all__ = ["filled", "quiet_app", "refs"]  # fixtures used here

BASE = "http://odd.example/"
STAMP = "20240102030405"


def sha1_b32(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode()


def warc_record(kind: str, uri: str, block: bytes, content_type: str,
                **extra: str) -> bytes:
    """One gzipped WARC/1.1 record, its headers written as given."""
    lines = ["WARC/1.1", f"WARC-Type: {kind}", f"WARC-Record-ID: <urn:uuid:{uuid.uuid4()}>",
             "WARC-Date: 2024-01-02T03:04:05Z", f"WARC-Target-URI: {uri}",
             f"Content-Type: {content_type}", f"WARC-Block-Digest: {sha1_b32(block)}",
             *(f"{name}: {value}" for name, value in extra.items()),
             f"Content-Length: {len(block)}"]
    return gzip.compress(("\r\n".join(lines) + "\r\n\r\n").encode() + block + b"\r\n\r\n")


def response_record(uri: str, body: bytes, status: str = "200 OK") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {len(body)}\r\n\r\n"
    return warc_record("response", uri, head.encode() + body,
                       "application/http; msgtype=response",
                       **{"WARC-Payload-Digest": sha1_b32(body)})


def import_records(archive: Archive, folder: Path, name: str, *records: bytes) -> None:
    path = folder / name
    path.write_bytes(b"".join(records))
    import_files(archive, [path])
    archive.store.close()


def bare(client: FlaskClient, url: str) -> tuple[int, str, dict[str, str]]:
    response = client.get(f"/web/{STAMP}mp_/{url}")
    return response.status_code, response.get_data(as_text=True), dict(response.headers)


# -- replay ------------------------------------------------------------------------------------

def test_a_record_with_a_garbage_http_head_is_a_502_naming_why(
        archive: Archive, client: FlaskClient, tmp_path: Path) -> None:
    url = BASE + "badhttp.html"
    import_records(archive, tmp_path, "bad.warc.gz", warc_record(
        "response", url, b"garbage not http\r\n\r\nbody", "application/http; msgtype=response"))
    status, text, _ = bare(client, url)
    assert status == 502
    assert "status line" in text


def test_a_revisit_whose_payload_is_not_archived_is_a_502(
        archive: Archive, client: FlaskClient, tmp_path: Path) -> None:
    """A Browsertrix crawl imported without its earlier WARC files."""
    url = BASE + "orphan.html"
    import_records(archive, tmp_path, "orphan.warc.gz", warc_record(
        "revisit", url, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n",
        "application/http; msgtype=response", **{
            "WARC-Payload-Digest": sha1_b32(b"nowhere"),
            "WARC-Profile": "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest",
            "WARC-Refers-To-Target-URI": BASE + "nowhere.html",
            "WARC-Refers-To-Date": "2020-01-01T00:00:00Z"}))
    status, text, _ = bare(client, url)
    assert status == 502
    assert "not in the archive" in text


@pytest.mark.parametrize("status_line", ["000 Zero", "101 Switching Protocols", "199 Early",
                                         "999 Weird", "600 Beyond"])
def test_a_status_outside_200_to_599_is_never_sent(
        archive: Archive, client: FlaskClient, tmp_path: Path, status_line: str) -> None:
    url = BASE + "status.html"
    import_records(archive, tmp_path, "status.warc.gz",
                   response_record(url, b"<p>odd</p>", status_line))
    status, text, _ = bare(client, url)
    assert status == 502
    assert f"status {int(status_line.split(maxsplit=1)[0])}" in text


@pytest.mark.parametrize("status_line", ["200 OK", "404 Not Found", "599 Last"])
def test_statuses_200_to_599_are_replayed_as_they_are(
        archive: Archive, client: FlaskClient, tmp_path: Path, status_line: str) -> None:
    url = BASE + "fine.html"
    import_records(archive, tmp_path, "fine.warc.gz",
                   response_record(url, b"<p>fine</p>", status_line))
    status, text, _ = bare(client, url)
    assert status == int(status_line.split(maxsplit=1)[0])
    assert "fine" in text


def test_a_resource_record_has_its_content_type_and_nosniff(
        archive: Archive, client: FlaskClient, tmp_path: Path) -> None:
    url = BASE + "res.txt"
    body = b"<script>alert(1)</script> resource body"
    import_records(archive, tmp_path, "res.warc.gz", warc_record(
        "resource", url, body, "text/plain", **{"WARC-Payload-Digest": sha1_b32(body)}))
    status, text, headers = bare(client, url)
    assert status == 200
    assert text == body.decode()  # plain text is not rewritten as HTML
    assert headers["Content-Type"] == "text/plain"
    assert headers["X-Content-Type-Options"] == "nosniff"


def import_with_head(archive: Archive, folder: Path, name: str, head: bytes,
                     body: bytes = b"<p>x</p>") -> str:
    """Import one response record whose HTTP head is ``head`` (bytes as written, without its
    Content-Length and blank line); return its URL."""
    url = f"{BASE}{name}.html"
    block = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    import_records(archive, folder, f"{name}.warc.gz", warc_record(
        "response", url, block, "application/http; msgtype=response",
        **{"WARC-Payload-Digest": sha1_b32(body)}))
    return url


def test_an_imported_record_with_a_utf8_header_value_replays(
        archive: Archive, quiet_app: Flask, tmp_path: Path) -> None:
    """wget --warc-file keeps a response head byte for byte, and a site that names a download
    in raw UTF-8 gives a header that is not Latin-1: it is sent percent-encoded, where it was a
    500 under waitress (which sends headers as Latin-1)."""
    url = import_with_head(archive, tmp_path, "utf8", (
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
        'Content-Disposition: inline; filename="Советская.html"\r\n').encode())
    with waitress_serving(quiet_app) as port:
        status, headers, body = fetch(port, f"/web/{STAMP}mp_/{url}")
    assert status == 200, status
    assert body == b"<p>x</p>"
    assert headers["X-Archive-Orig-Content-Disposition"] == (
        'inline; filename="%D0%A1%D0%BE%D0%B2%D0%B5%D1%82%D1%81%D0%BA%D0%B0%D1%8F.html"')


@pytest.mark.parametrize(("head", "dropped"), [
    (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Odd: a\rb\r\n", "X-Archive-Orig-X-Odd"),
    (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\rX-Injected: 1\r\n", "X-Injected"),
    (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Nul: a\x00b\r\n", "X-Archive-Orig-X-Nul"),
])
def test_an_archived_header_with_a_control_character_is_dropped(
        archive: Archive, quiet_app: Flask, tmp_path: Path, head: bytes, dropped: str) -> None:
    """A bare CR (or NUL) inside an archived header value: werkzeug refuses it (a 500) and a
    browser would refuse the answer; the header is dropped, the page still served."""
    url = import_with_head(archive, tmp_path, "cr", head)
    answer = quiet_app.test_client().get(f"/web/{STAMP}mp_/{url}")
    assert answer.status_code == 200
    assert answer.data == b"<p>x</p>"
    assert dropped not in answer.headers
    assert all(value.isprintable() for _, value in answer.headers.items())


def test_archived_headers_whose_names_are_no_names_are_dropped(
        archive: Archive, client: FlaskClient, tmp_path: Path) -> None:
    url = import_with_head(archive, tmp_path, "names", b"HTTP/1.1 200 OK\r\n"
                           b"Content-Type: text/html\r\nBad Name: 1\r\n: 2\r\nX-Nul\x00: 3\r\n"
                           b"X-Fine: 4\r\n")
    status, _, headers = bare(client, url)
    assert status == 200
    assert [name for name in headers if name.startswith("X-Archive-Orig-")] == [
        "X-Archive-Orig-X-Fine"]


@pytest.mark.parametrize(("body", "content_type"), [
    (b"<p>x</p>", "text/html; charset=utf-8"),  # rewritten as HTML: says so
    (b"%PDF-1.4 <html>", None),  # nothing says what it is, and the browser must not guess
    # sniffed as browsers sniff: after whitespace, HTML signatures (prefixes in Chromium)
    (b"\n\t<!DOCTYPE html><p>x</p>", "text/html; charset=utf-8"),
    (b"\r\n<!-- header.php --><pre>x</pre>", "text/html; charset=utf-8"),
    (b"<pre>x</pre>", "text/html; charset=utf-8"),
    (b"\xef\xbb\xbf<p>x</p>", None),  # after a BOM: text
    (b"<x>not a tag browsers know</x>", None),
])
def test_an_archived_answer_without_a_content_type_is_not_sniffed(
        archive: Archive, client: FlaskClient, tmp_path: Path, body: bytes,
        content_type: str | None) -> None:
    url = import_with_head(archive, tmp_path, "untyped", b"HTTP/1.1 200 OK\r\n", body)
    status, _, headers = bare(client, url)
    assert status == 200
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers.get("Content-Type") == content_type


# -- export: where it writes --------------------------------------------------------------------

def test_export_refuses_a_fifo_and_leaves_it_a_fifo(filled: Archive, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for fmt in ("cdxj", "wacz"):
        code, _, err = invoke(filled, "export", "--format", fmt, "-o", str(fifo))
        assert code == 2, err
        assert err.startswith("error: ") and len(err.splitlines()) == 1
        assert "not a regular file" in err
        assert fifo.is_fifo()
    assert sorted(os.listdir(tmp_path)).count("pipe") == 1
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_export_refuses_a_symlink_and_leaves_its_target(filled: Archive, tmp_path: Path) -> None:
    target = tmp_path / "target.cdxj"
    target.write_text("keep me\n")
    link = tmp_path / "link.cdxj"
    link.symlink_to(target)
    code, _, err = invoke(filled, "export", "--format", "cdxj", "-o", str(link))
    assert code == 2 and len(err.splitlines()) == 1 and "symbolic link" in err
    assert link.is_symlink() and target.read_text() == "keep me\n"


def test_export_refuses_a_folder(filled: Archive, tmp_path: Path) -> None:
    """The CLI's option already refuses a folder; the export functions do too."""
    folder = tmp_path / "folder"
    folder.mkdir()
    for export in (export_cdxj, export_wacz):
        with pytest.raises(OutputError, match="not a regular file"):
            export(filled, folder)
    assert folder.is_dir() and not list(folder.iterdir())


def test_export_still_replaces_a_regular_file(filled: Archive, tmp_path: Path) -> None:
    out = tmp_path / "index.cdxj"
    out.write_text("old\n")
    code, _, err = invoke(filled, "export", "--format", "cdxj", "-o", str(out))
    assert code == 0, err
    assert out.read_text() != "old\n" and out.read_text().count("\n") == snapshot(filled)[1]


@pytest.mark.parametrize("name", ["evil.warc.gz", "sub/index.cdxj", "../warcs/x.wacz"])
def test_export_refuses_the_warc_folder(filled: Archive, name: str) -> None:
    before = snapshot(filled)
    out = filled.store.directory / name
    code, _, err = invoke(filled, "export", "-o", str(out))
    assert code == 2 and len(err.splitlines()) == 1 and "WARC folder" in err
    assert snapshot(filled) == before
    code, _, err = invoke(filled, "reindex")
    assert code == 0, err


def test_export_refuses_the_archives_database(filled: Archive) -> None:
    database = Path(str(filled.db.engine.url.database))
    assert database.is_file()
    for target in (database, database.with_name(database.name + "-wal")):
        before = database.read_bytes()
        code, _, err = invoke(filled, "export", "--format", "cdxj", "-o", str(target))
        assert code == 2 and len(err.splitlines()) == 1 and "database" in err, err
        assert database.read_bytes() == before
    assert invoke(filled, "verify")[0] == 0


# -- export: what it reads ----------------------------------------------------------------------

def test_export_refuses_when_a_warc_file_is_missing(filled: Archive, tmp_path: Path) -> None:
    """The index points at a file that is gone: the package would not replay it."""
    # A second WARC file, so one remains after the other is deleted.
    import_records(filled, tmp_path, "extra.warc.gz",
                   response_record(BASE + "extra.html", b"<p>extra</p>"))
    names = filled.store.files()
    assert len(names) >= 2
    gone = names[0]
    filled.store.path_of(gone).unlink()
    for fmt, out in (("wacz", tmp_path / "out.wacz"), ("cdxj", tmp_path / "out.cdxj")):
        code, _, err = invoke(filled, "export", "--format", fmt, "-o", str(out))
        assert code == 5, err
        assert len(err.splitlines()) == 1 and gone in err and "missing" in err
        assert not out.exists()
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_a_complete_archive_still_exports_and_validates(filled: Archive, tmp_path: Path) -> None:
    out = tmp_path / "all.wacz"
    code, _, err = invoke(filled, "export", "-o", str(out))
    assert code == 0, err
    result = wacz_validate(out)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_damaged_record_is_one_error_line(filled: Archive, refs: Site,
                                            tmp_path: Path) -> None:
    """Cut the WARC file inside a cited page's record: a post's package copies it, finds it
    short and stops with one line (no 'Exception ignored in ZipFile.__del__' after it)."""
    capture = first_response(filled, refs.url("/article.html"))
    path = filled.store.path_of(capture.warc_file)
    path.write_bytes(path.read_bytes()[:capture.offset + capture.length - 10])
    first = str(post_id(filled, "https://blog.example/first"))
    out = tmp_path / "post.wacz"
    done = subprocess.run(
        [sys.executable, "-m", "archiver", "export", "-o", str(out), "--post", first],
        env={**os.environ, **cli_env(filled)}, capture_output=True, text=True, timeout=120,
        check=False)
    assert done.returncode == 5, done.stderr
    assert done.stderr.startswith("error: ") and len(done.stderr.splitlines()) == 1, done.stderr
    assert not out.exists()
