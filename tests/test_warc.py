"""WARC writing and reading: warcio's checker, offsets, rotation, digests, reindex input."""

from __future__ import annotations

import gzip
import os
import re
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from werkzeug.wrappers import Response

from archiver.demo.fixtureweb import Site
from archiver.errors import WriteError
from archiver.net.client import HttpClient
from archiver.warc.records import http_head
from archiver.warc.store import WarcStore, open_record, warc_date
from tests.conftest import RawSite, make_settings, response

NAME = re.compile(r"^archive-\d{20}-\d{5}\.warc\.gz$")


def warcio_check(*paths: Path) -> subprocess.CompletedProcess[str]:
    """Run warcio's own checker (block and payload digests of every record)."""
    return subprocess.run([sys.executable, "-m", "warcio.cli", "check", "-v", *map(str, paths)],
                          capture_output=True, text=True, check=False)


@contextmanager
def writes_fail_past(limit: int) -> Iterator[None]:
    """Writes of this process past ``limit`` bytes of a file fail with EFBIG, as on a full
    disk (the signal that would kill the process is ignored meanwhile)."""
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limits[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, previous)


def test_records_pass_warcio_check_and_read_back(tmp_path: Path, site: Site) -> None:
    site.page("/page", "<html><body>archived</body></html>")
    site.route("/chunked", lambda _r: Response(iter([b"one ", b"two"]), mimetype="text/plain"))
    client = HttpClient(make_settings(tmp_path))
    store = WarcStore(tmp_path / "warcs")
    written = [store.write_exchange(client.fetch(site.url(p)).final) for p in ("/page", "/chunked")]
    store.close()

    files = store.files()
    assert len(files) == 1 and NAME.match(files[0])
    result = warcio_check(store.path_of(files[0]))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "digest pass" in result.stdout

    for location, body in zip(written, [b"<html><body>archived</body></html>", b"one two"],
                              strict=True):
        record = open_record(store.read_record_bytes(location.warc_file, location.offset,
                                                     location.length))
        assert record.rec_type == "response"
        assert record.rec_headers.get_header("WARC-Target-URI") == location.url
        assert record.rec_headers.get_header("WARC-IP-Address") == "127.0.0.1"
        assert record.rec_headers.get_header("WARC-Payload-Digest") == location.payload_digest
        assert record.http_headers.get_header("Transfer-Encoding") is None
        assert record.content_stream().read() == body

    # The file alone gives back exactly what the writer reported.
    assert list(store.iter_locations(files[0])) == written


def test_request_records_point_to_their_response(tmp_path: Path, site: Site) -> None:
    from warcio.archiveiterator import ArchiveIterator

    site.page("/", "x")
    store = WarcStore(tmp_path / "warcs")
    store.write_exchange(HttpClient(make_settings(tmp_path)).fetch(site.url("/")).final)
    store.close()
    with open(store.path_of(store.files()[0]), "rb") as handle:
        records = [(r.rec_type, r.rec_headers) for r in ArchiveIterator(handle)]
    assert [kind for kind, _ in records] == ["warcinfo", "response", "request"]
    assert records[0][1].protocol == "WARC/1.1"
    response_id = records[1][1].get_header("WARC-Record-ID")
    assert records[2][1].get_header("WARC-Concurrent-To") == response_id


def test_chunked_and_plain_give_the_same_payload_digest(tmp_path: Path, site: Site) -> None:
    site.route("/chunked", lambda _r: Response(iter([b"same", b" bytes"]), mimetype="text/plain"))
    site.page("/plain", b"same bytes", content_type="text/plain")
    client = HttpClient(make_settings(tmp_path))
    store = WarcStore(tmp_path / "warcs")
    chunked = store.write_exchange(client.fetch(site.url("/chunked")).final)
    plain = store.write_exchange(client.fetch(site.url("/plain")).final)
    assert chunked.payload_digest == plain.payload_digest


def test_files_roll_over_by_size(tmp_path: Path, site: Site) -> None:
    site.page("/", os.urandom(2000), content_type="application/octet-stream")  # incompressible
    client = HttpClient(make_settings(tmp_path))
    store = WarcStore(tmp_path / "warcs", max_file_bytes=1500)
    for _ in range(3):
        store.write_exchange(client.fetch(site.url("/")).final)
    store.close()
    assert len(store.files()) == 3
    assert all(NAME.match(name) for name in store.files())
    assert warcio_check(*(store.path_of(n) for n in store.files())).returncode == 0


def test_a_new_file_whose_warcinfo_cannot_be_written_is_not_kept(tmp_path: Path,
                                                                 site: Site) -> None:
    site.page("/", os.urandom(2000), content_type="application/octet-stream")
    exchange = HttpClient(make_settings(tmp_path)).fetch(site.url("/")).final
    store = WarcStore(tmp_path / "warcs")
    with writes_fail_past(200), pytest.raises(WriteError, match="File too large"):
        store.write_exchange(exchange)
    assert list(store.directory.iterdir()) == []  # neither an empty file nor its marker
    location = store.write_exchange(exchange)
    store.close()
    assert warcio_check(store.path_of(location.warc_file)).returncode == 0


def test_truncated_bodies_are_marked(tmp_path: Path, site: Site) -> None:
    site.page("/big", b"z" * 4000, content_type="text/plain")
    client = HttpClient(make_settings(tmp_path, fetch__max_body_bytes="1000"))
    store = WarcStore(tmp_path / "warcs")
    location = store.write_exchange(client.fetch(site.url("/big")).final)
    record = open_record(store.read_record_bytes(location.warc_file, location.offset,
                                                 location.length))
    assert record.rec_headers.get_header("WARC-Truncated") == "length"
    assert location.truncated == "length"


def test_revisit_records_carry_the_original_and_pass_warcio_check(tmp_path: Path,
                                                                  site: Site) -> None:
    site.page("/a.png", b"same image bytes", content_type="image/png")
    site.page("/b.png", b"same image bytes", content_type="image/png")
    client = HttpClient(make_settings(tmp_path))
    store = WarcStore(tmp_path / "warcs")
    original = store.write_exchange(client.fetch(site.url("/a.png")).final)
    revisit = store.write_exchange(client.fetch(site.url("/b.png")).final, revisit_of=original)
    store.close()
    result = warcio_check(store.path_of(store.files()[0]))
    assert result.returncode == 0, result.stdout + result.stderr

    record = open_record(store.read_record_bytes(revisit.warc_file, revisit.offset,
                                                 revisit.length))
    headers = record.rec_headers
    assert (record.rec_type, revisit.record_type) == ("revisit", "revisit")
    assert headers.get_header("WARC-Profile") == (
        "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest")
    assert headers.get_header("WARC-Refers-To") == original.record_id
    assert headers.get_header("WARC-Refers-To-Target-URI") == site.url("/a.png")
    assert headers.get_header("WARC-Refers-To-Date") == warc_date(original.captured_at)
    assert headers.get_header("WARC-Payload-Digest") == original.payload_digest
    assert revisit.payload_digest == original.payload_digest
    assert record.http_headers.get_header("Content-Type") == "image/png"
    assert record.content_stream().read() == b""  # the payload is the original's


def test_incompressible_bodies_are_stored_and_read_back(tmp_path: Path, site: Site) -> None:
    noise = os.urandom(200_000)  # like a JPEG or a WOFF2: deflate would only spend time
    text = b"compressible text " * 10_000
    site.page("/photo.jpg", noise, content_type="image/jpeg")
    site.page("/page.txt", text, content_type="text/plain")
    client = HttpClient(make_settings(tmp_path))
    store = WarcStore(tmp_path / "warcs")
    photo = store.write_exchange(client.fetch(site.url("/photo.jpg")).final)
    page = store.write_exchange(client.fetch(site.url("/page.txt")).final)
    store.close()
    assert warcio_check(store.path_of(store.files()[0])).returncode == 0
    assert photo.length < len(noise) + 2_000  # a few bytes of framing more, nothing lost
    assert page.length < len(text) // 20  # deflated
    for location, body in ((photo, noise), (page, text)):
        record = open_record(store.read_record_bytes(location.warc_file, location.offset,
                                                     location.length))
        assert record.content_stream().read() == body


def test_non_ascii_response_headers_are_kept_as_they_came(tmp_path: Path) -> None:
    """Raw UTF-8 and raw Latin-1 header bytes are stored as they came (not percent-encoded
    from their Latin-1 reading, which stored another address), and read back as text."""
    sent = ('Content-Disposition: inline; filename="Советская.txt"\r\n'.encode()
            + b"X-Title: caf\xe9\r\n")
    site = RawSite(lambda _method, _path: response(b"200 OK", sent, b"x"))
    try:
        store = WarcStore(tmp_path / "warcs")
        location = store.write_exchange(
            HttpClient(make_settings(tmp_path)).fetch(site.url("/")).final)
        store.close()
    finally:
        site.close()
    assert warcio_check(store.path_of(store.files()[0])).returncode == 0
    stored = store.read_record_bytes(location.warc_file, location.offset, location.length)
    assert sent in gzip.decompress(stored)
    record = open_record(stored)
    assert record.http_headers.get_header("Content-Disposition") == \
        'inline; filename="Советская.txt"'
    assert record.http_headers.get_header("X-Title") == "caf\u00e9"


def test_a_head_beyond_latin1_is_written_as_utf8() -> None:
    """Text no client read from the wire (beyond Latin-1) is written as UTF-8, line by line."""
    head = http_head("HTTP/1.1", "200 OK", [("X-A", "caf\u00e9"), ("X-B", "\u0421")])
    assert head == b"HTTP/1.1 200 OK\r\nX-A: caf\xe9\r\nX-B: \xd0\xa1\r\n\r\n"
