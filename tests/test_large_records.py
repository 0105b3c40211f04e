"""Records larger than memory should be: ``archiver import``, ``verify`` and WACZ export read a
record as a stream, checking its digests on the way, so a long video in an imported WACZ costs
bounded memory; and the streaming de-chunker agrees with warcio's on every body.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import random
import tracemalloc
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from warcio.bufferedreaders import ChunkedDataException, ChunkedDataReader

from archiver.archive import Archive
from archiver.errors import StorageError
from archiver.warc.export import export_wacz
from archiver.warc.importer import import_files
from archiver.warc.reader import _Dechunker
from archiver.warc.verify import verify
from tests.test_warc_tools import snapshot

BIG = 48 << 20  # bytes of payload: far more than any buffer the readers may hold
PIECE = 1 << 20
MEMORY_LIMIT = 12 << 20  # peak Python allocations while importing and verifying it
URL = "http://video.example/film.mp4"


def sha1_b32(digest: hashlib._Hash) -> str:
    return "sha1:" + base64.b32encode(digest.digest()).decode()


def payload_pieces() -> Iterator[bytes]:
    """BIG bytes that do not compress (as a video's), in pieces."""
    noise = random.Random(0).randbytes(PIECE)
    for number in range(BIG // PIECE):
        yield noise[number:] + noise[:number]


def body_pieces(chunked: bool) -> Iterator[bytes]:
    """The stored body, optionally in HTTP chunked encoding."""
    for piece in payload_pieces():
        yield b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
    if chunked:
        yield b"0\r\n\r\n"


def write_big_warc(path: Path, *, chunked: bool = False, lie: bool = False) -> Path:
    """One gzipped response record of BIG bytes, written piece by piece.  Its payload digest
    covers the de-chunked body (as some tools compute it); ``lie`` makes it another's."""
    coding = ("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(BIG))
    http = (f"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\n{coding[0]}: {coding[1]}\r\n\r\n"
            .encode())
    block, payload, length = hashlib.sha1(http), hashlib.sha1(), len(http)
    for piece in body_pieces(chunked):
        block.update(piece)
        length += len(piece)
    for piece in payload_pieces():
        payload.update(piece)
    if lie:
        payload.update(b"!")
    head = (f"WARC/1.1\r\nWARC-Type: response\r\nWARC-Record-ID: <urn:uuid:"
            f"00000000-0000-4000-8000-{int(chunked)}{int(lie)}0000000000>\r\n"
            f"WARC-Date: 2024-05-01T12:00:00Z\r\nWARC-Target-URI: {URL}\r\n"
            f"Content-Type: application/http; msgtype=response\r\n"
            f"WARC-Block-Digest: {sha1_b32(block)}\r\nWARC-Payload-Digest: {sha1_b32(payload)}"
            f"\r\nContent-Length: {length}\r\n\r\n").encode()
    deflate = zlib.compressobj(1, zlib.DEFLATED, 31)
    with open(path, "wb") as out:
        for part in (head, http, *body_pieces(chunked), b"\r\n\r\n"):
            out.write(deflate.compress(part))
        out.write(deflate.flush())
    return path


def peak_bytes(action: object) -> int:
    """The peak of Python's allocations while ``action()`` runs."""
    tracemalloc.start()
    try:
        action()  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("chunked", [False, True])
def test_big_record_imports_verifies_and_exports_in_bounded_memory(
        archive: Archive, tmp_path: Path, chunked: bool) -> None:
    warc = write_big_warc(tmp_path / "film.warc.gz", chunked=chunked)
    assert peak_bytes(lambda: import_files(archive, [warc])) < MEMORY_LIMIT
    problems: list[object] = []
    assert peak_bytes(lambda: problems.extend(verify(archive))) < MEMORY_LIMIT
    assert problems == []
    wacz = tmp_path / "all.wacz"
    assert peak_bytes(lambda: export_wacz(archive, wacz)) < MEMORY_LIMIT
    with zipfile.ZipFile(wacz) as package:
        stored = [info for info in package.infolist() if info.filename.startswith("archive/")]
    assert len(stored) == 1 and stored[0].file_size > warc.stat().st_size - 4096


def test_big_record_with_a_lying_digest_is_refused(archive: Archive, tmp_path: Path) -> None:
    warc = write_big_warc(tmp_path / "lie.warc.gz", lie=True)
    before = snapshot(archive)
    with pytest.raises(StorageError, match="payload digest does not match"):
        import_files(archive, [warc])
    assert snapshot(archive) == before


def warcio_dechunk(body: bytes) -> bytes | None:
    """What warcio makes of a chunked body, or None when it is not one."""
    try:
        return ChunkedDataReader(io.BytesIO(body), raise_exceptions=True).read()
    except ChunkedDataException:
        return None


def ours(body: bytes, cuts: list[int]) -> bytes | None:
    """What the streaming de-chunker makes of a body fed in pieces cut at ``cuts``."""
    out = bytearray()
    dechunker = _Dechunker(out.extend)
    edges = [0, *sorted(c % (len(body) + 1) for c in cuts), len(body)]
    for start, end in itertools.pairwise(edges):
        dechunker.feed(body[start:end])
    return bytes(out) if dechunker.whole else None


CASES = [b"", b"0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n", b"5;ext=1\r\nhello\r\n0\r\n\r\n",
         b"A\r\n0123456789\r\n0\r\n\r\n", b"5\r\nhello\r\n", b"5\r\nhelloXX0\r\n\r\n",
         b"not chunked at all", b"5\nhello\r\n0\r\n\r\n", b"0\r\n\r\ntrailing bytes",
         b"0\r\nX-Trailer: 1\r\n\r\n", b"3\r\nab", b"z\r\nhello\r\n0\r\n\r\n",
         b"1" * 80 + b"\r\n"]


@pytest.mark.parametrize("body", CASES)
def test_dechunker_agrees_with_warcio(body: bytes) -> None:
    for cuts in ([], [1], [2, 3], list(range(len(body)))):
        assert ours(body, cuts) == warcio_dechunk(body), (body, cuts)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=5), st.binary(max_size=8),
       st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_dechunker_agrees_with_warcio_on_any_body(chunks: list[bytes], tail: bytes,
                                                  cuts: list[int]) -> None:
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c) + b"0\r\n\r\n" + tail
    assert ours(body, cuts) == warcio_dechunk(body)
    damaged = body[:len(body) // 2]
    assert ours(damaged, cuts) == warcio_dechunk(damaged)


@pytest.mark.parametrize("compresses", [False, True])
def test_a_large_archived_video_is_streamed_with_byte_ranges(tmp_path: Path,
                                                             compresses: bool) -> None:
    """Replay sends an imported video larger than it would ever decode into memory (4 x
    fetch.max_body_bytes) as it reads it, whole or by byte range; also when its record is
    small because the body compresses well."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    from archiver.archive import initialise
    from tests.conftest import make_settings
    from web import create_app

    film = bytes(range(256)) * (6 << 12) if compresses else b"".join(payload_pieces())[:6 << 20]
    warc = tmp_path / "film.warc.gz"
    with open(warc, "wb") as out:
        writer = WARCWriter(out, gzip=True)
        http = StatusAndHeaders("200 OK", [("Content-Type", "video/mp4"),
                                           ("Content-Length", str(len(film)))],
                                protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record(
            URL, "response", payload=io.BytesIO(film), length=len(film), http_headers=http,
            warc_headers_dict={"WARC-Date": "2024-05-01T12:00:00Z"}))
    settings = make_settings(tmp_path / "data", fetch__max_body_bytes="1MB")
    initialise(settings)
    with Archive.open(settings) as archive:
        import_files(archive, [warc])
        client = create_app(settings, archive).test_client()
        path = f"/web/20240501120000id_/{URL}"
        whole = client.get(path)
        assert whole.status_code == 200 and whole.headers["Content-Length"] == str(len(film))
        assert whole.data == film
        part = client.get(path, headers={"Range": "bytes=5000000-5000099"})
        assert part.status_code == 206 and part.data == film[5_000_000:5_000_100]
        assert part.headers["Content-Range"] == f"bytes 5000000-5000099/{len(film)}"

        def read_streamed() -> None:
            answer = client.get(path, buffered=False)
            assert sum(len(chunk) for chunk in answer.response) == len(film)
            answer.close()

        # (A body that compresses a thousandfold inflates in bursts of up to 16 MB inside
        # warcio's reader, whatever the body's size: only the other one is measured.)
        peak = peak_bytes(read_streamed)
        assert compresses or peak < len(film) // 3
