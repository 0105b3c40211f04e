"""``archiver import`` checks the block and payload digests a WARC's records declare, the way
``archiver verify`` does, and refuses a file whose bytes do not have them: nothing of it is
kept, and the archive still verifies afterwards.

The WARC files are written with warcio (sha1 base32 digests, as warcio, wget and pywb write
them) or with sha256 hex digests as Browsertrix writes them.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
from pathlib import Path

import pytest
from sqlalchemy import select
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from archiver.archive import Archive
from archiver.errors import StorageError
from archiver.models import Capture
from archiver.warc.importer import import_files
from archiver.warc.reader import scan_warc
from archiver.warc.verify import verify
from tests.test_warc_tools import invoke, snapshot

BASE = "http://site.example"
PAGE = "<html><body><p>Caf\u00e9 society</p></body></html>".encode()
STYLE = b"body{color:red}"
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
DATE = "2024-05-01T12:00:00Z"

Resource = tuple[str, bytes, str]  # path, body, content type
SITE: list[Resource] = [("/article.html", PAGE, "text/html"), ("/style.css", STYLE, "text/css"),
                        ("/pixel.png", IMAGE, "image/png")]


def http_head(body: bytes, content_type: str) -> StatusAndHeaders:
    return StatusAndHeaders("200 OK", [("Content-Type", content_type),
                                       ("Content-Length", str(len(body)))], protocol="HTTP/1.1")


def sha1_b32(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode()


def sha256_hex(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_warc(path: Path, resources: list[Resource], *, gzipped: bool = False,
               digests: dict[str, dict[str, str]] | None = None, tag: str = "a") -> Path:
    """Response records for ``resources`` with fixed IDs and dates; warcio adds the sha1
    digests a record is not given in ``digests`` (by resource path)."""
    with open(path, "wb") as out:
        writer = WARCWriter(out, gzip=gzipped)
        for number, (resource, body, content_type) in enumerate(resources):
            headers = {"WARC-Record-ID": f"<urn:uuid:00000000-0000-4000-8000-{tag}{number:011d}>",
                       "WARC-Date": DATE, **(digests or {}).get(resource, {})}
            writer.write_record(writer.create_warc_record(
                BASE + resource, "response", payload=io.BytesIO(body), length=len(body),
                http_headers=http_head(body, content_type), warc_headers_dict=headers))
    return path


def browsertrix_digests(resources: list[Resource]) -> dict[str, dict[str, str]]:
    """sha256 hex block and payload digests, as Browsertrix writes them."""
    return {resource: {"WARC-Block-Digest": sha256_hex(http_head(body, kind).to_bytes() + body),
                       "WARC-Payload-Digest": sha256_hex(body)}
            for resource, body, kind in resources}


def record_offset(path: Path, uri: str) -> int:
    return next(r.offset for r in scan_warc(path) if r.record.target_uri == uri)


@pytest.fixture
def stocked(archive: Archive, tmp_path: Path) -> Archive:
    """An archive that already holds one imported file (so "nothing kept" is not vacuous)."""
    other = [("/other.html", b"<html>other</html>", "text/html")]
    assert import_files(archive, [write_warc(tmp_path / "stock.warc", other, tag="f")]).records == 1
    return archive


def assert_refused(archive: Archive, bad: Path, uri: str, offset: int, problem: str) -> None:
    """The file is refused, alone or with a good one, naming the record, and nothing is kept."""
    good = write_warc(bad.parent / "good.warc", [("/good.html", b"fine", "text/html")], tag="e")
    before = snapshot(archive)
    for inputs in ([bad], [good, bad]):
        with pytest.raises(StorageError) as caught:
            import_files(archive, inputs)
        message = str(caught.value)
        assert str(bad) in message and uri in message and f"at byte {offset}" in message
        assert problem in message, message
        assert snapshot(archive) == before
    code, _, err = invoke(archive, "import", str(bad))
    assert code == StorageError.exit_code and uri in err and problem in err, err
    assert snapshot(archive) == before
    assert verify(archive) == []


def test_flipped_payload_byte_is_refused(stocked: Archive, tmp_path: Path) -> None:
    path = write_warc(tmp_path / "flip.warc", SITE)
    offset = record_offset(path, BASE + "/style.css")
    data = bytearray(path.read_bytes())
    data[data.index(b"color:red") + 6] ^= 0x20  # red -> Red
    path.write_bytes(bytes(data))
    assert_refused(stocked, path, BASE + "/style.css", offset, "block digest does not match")
    assert "payload digest does not match" in invoke(stocked, "import", str(path))[2]


@pytest.mark.parametrize("gzipped", [False, True])
def test_wrong_block_digest_header_is_refused(stocked: Archive, tmp_path: Path,
                                              gzipped: bool) -> None:
    """A wrong header on unchanged bytes; gzipped, the gzip checksums are all correct."""
    wrong = {"/pixel.png": {"WARC-Block-Digest": sha1_b32(b"something else")}}
    path = write_warc(tmp_path / ("wrong.warc.gz" if gzipped else "wrong.warc"), SITE,
                      gzipped=gzipped, digests=wrong)
    offset = record_offset(path, BASE + "/pixel.png")
    assert offset > 0
    assert_refused(stocked, path, BASE + "/pixel.png", offset, "block digest does not match")


@pytest.mark.parametrize("name", ["right.warc", "right.warc.gz"])
def test_correct_digests_import(stocked: Archive, tmp_path: Path, name: str) -> None:
    path = write_warc(tmp_path / name, SITE, gzipped=name.endswith(".gz"))
    summary = import_files(stocked, [path])
    assert (summary.imported, summary.records) == ([f"imported-{name}"], 3)
    assert verify(stocked) == []


def test_browsertrix_sha256_hex_digests(stocked: Archive, tmp_path: Path) -> None:
    digests = browsertrix_digests(SITE)
    right = write_warc(tmp_path / "btrix.warc.gz", SITE, gzipped=True, digests=digests)
    assert all(r.record.header("WARC-Payload-Digest") == digests[r.record.target_uri[
        len(BASE):]]["WARC-Payload-Digest"] for r in scan_warc(right))

    digests["/article.html"]["WARC-Payload-Digest"] = sha256_hex(b"another page")
    wrong = write_warc(tmp_path / "btrix-wrong.warc.gz", SITE, gzipped=True, digests=digests)
    assert_refused(stocked, wrong, BASE + "/article.html", 0, "payload digest does not match")

    summary = import_files(stocked, [right])
    assert (summary.imported, summary.records) == (["imported-btrix.warc.gz"], 3)
    assert verify(stocked) == []


def test_records_without_digests_import(stocked: Archive, tmp_path: Path) -> None:
    plain = tmp_path / "plain.warc"
    with open(plain, "wb") as out:
        for number, (resource, body, kind) in enumerate(SITE):
            block = http_head(body, kind).to_bytes() + body
            out.write((f"WARC/1.0\r\nWARC-Type: response\r\nWARC-Record-ID: "
                       f"<urn:uuid:00000000-0000-4000-8000-d{number:011d}>\r\n"
                       f"WARC-Date: {DATE}\r\nWARC-Target-URI: {BASE}{resource}\r\n"
                       "Content-Type: application/http; msgtype=response\r\n"
                       f"Content-Length: {len(block)}\r\n\r\n").encode() + block + b"\r\n\r\n")
    assert import_files(stocked, [plain]).records == 3
    assert verify(stocked) == []


def test_unknown_digest_algorithm_imports_with_a_warning(stocked: Archive, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    odd = {"/style.css": {"WARC-Block-Digest": "xxh128:0123456789abcdef0123456789abcdef"}}
    path = write_warc(tmp_path / "odd.warc", SITE, digests=odd)
    with caplog.at_level(logging.WARNING, logger="archiver.warc.importer"):
        assert import_files(stocked, [path]).records == 3
    warned = [r.getMessage() for r in caplog.records if r.name == "archiver.warc.importer"]
    assert len(warned) == 1 and "xxh128" in warned[0] and BASE + "/style.css" in warned[0]
    # verify agrees: a digest it cannot compute is noted, not a problem (exit 0, not 1)
    with caplog.at_level(logging.WARNING, logger="archiver.warc.verify"):
        assert verify(stocked) == []
    assert any("xxh128" in r.getMessage() for r in caplog.records
               if r.name == "archiver.warc.verify")


def test_an_http_head_ending_lines_with_bare_lf_is_read_as_warcio_reads_it(
        archive: Archive, tmp_path: Path) -> None:
    """Some writers end the archived HTTP head's lines with LF alone: its payload is what
    follows the blank line, so the declared digest verifies and the index gets the status."""
    body = b"hello"
    block = b"HTTP/1.1 200 OK\nContent-Type: text/plain\n\n" + body
    record = (b"WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: http://lf.example/\r\n"
              b"WARC-Date: 2024-01-01T00:00:00Z\r\nWARC-Record-ID: <urn:uuid:"
              b"00000000-0000-4000-8000-00000000000a>\r\n"
              b"Content-Type: application/http; msgtype=response\r\n"
              b"WARC-Payload-Digest: " + sha1_b32(body).encode() + b"\r\n"
              b"WARC-Block-Digest: " + sha1_b32(block).encode() + b"\r\n"
              b"Content-Length: %d\r\n\r\n" % len(block) + block + b"\r\n\r\n")
    path = tmp_path / "lf.warc"
    path.write_bytes(record)
    assert import_files(archive, [path]).records == 1
    rows = snapshot(archive)
    assert invoke(archive, "reindex")[0] == 0
    assert snapshot(archive) == rows
    with archive.db.session() as session:
        assert session.execute(select(Capture.status, Capture.mime)).one() == (200, "text/plain")
    assert verify(archive) == []
