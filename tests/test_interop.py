"""Other archives read our WARC files: pywb replays our captures with the origin's bytes.

pywb runs as its own program from the interoperability environment that `make test` builds
(`.venv-interop`, or the folder named by ARCHIVER_INTEROP_BIN).
"""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from werkzeug.wrappers import Response

from archiver.archive import Archive
from archiver.clock import utcnow, warc_timestamp
from archiver.demo.fixtureweb import Site
from archiver.jobs import WorkKind, run_due
from archiver.models import Capture, Link
from archiver.urls import host_of, url_key

ROOT = Path(__file__).resolve().parent.parent
INTEROP_BIN = Path(os.environ.get("ARCHIVER_INTEROP_BIN", ROOT / ".venv-interop" / "bin"))

PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
                    "0000000d49444154789c63f8cfc0f01f0005000201e0a7d5b50000000049454e44ae426082")


def tool(name: str) -> Path:
    path = INTEROP_BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make interop-tools` (make test does it)")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def origin(site: Site) -> Site:
    # A header in raw UTF-8, as many sites send a file name: kept as it came (werkzeug
    # writes a header's text as Latin-1, so this is its Latin-1 reading).
    named = 'inline; filename="Советская.html"'.encode().decode("latin-1")
    site.page("/article.html", "<html><body><p>Caf\u00e9 society, 2008</p></body></html>",
              headers={"Content-Disposition": named})
    site.page("/gzipped.txt", gzip.compress(b"compressed body " * 50),
              content_type="text/plain", headers={"Content-Encoding": "gzip"})
    site.route("/chunked.txt", lambda _r: Response(iter([b"first ", b"second"]),
                                                   mimetype="text/plain"))
    site.page("/pixel.png", PNG, content_type="image/png")
    return site


@contextmanager
def running_pywb(files: list[Path], workdir: Path, cdxj: Path | None = None) -> Iterator[str]:
    """Start pywb on a collection holding ``files``; yield its base URL. With ``cdxj`` the
    collection uses that index as it is (no ``wb-manager add``, which would index anew)."""
    workdir.mkdir()
    subprocess.run([tool("wb-manager"), "init", "ours"], cwd=workdir, check=True,
                   capture_output=True)
    if cdxj is None:
        subprocess.run([tool("wb-manager"), "add", "ours", *map(str, files)], cwd=workdir,
                       check=True, capture_output=True)
    else:
        collection = workdir / "collections" / "ours"
        for path in files:
            shutil.copy(path, collection / "archive" / path.name)
        shutil.copy(cdxj, collection / "indexes" / "index.cdxj")
    port = free_port()
    process = subprocess.Popen([tool("wayback"), "-p", str(port), "-b", "127.0.0.1"],
                               cwd=workdir, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(base + "/", timeout=2)
                break
            except requests.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("pywb did not start") from None
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def test_pywb_replays_our_captures_byte_for_byte(archive: Archive, origin: Site,
                                                 tmp_path: Path) -> None:
    paths = ["/article.html", "/gzipped.txt", "/chunked.txt", "/pixel.png"]
    originals = {}
    for path in paths:
        raw = requests.get(origin.url(path), stream=True, timeout=5).raw
        originals[path] = raw.read(decode_content=False)
    now = utcnow()
    with archive.db.session() as session:  # due at once, captured through the normal jobs
        session.add_all([Link(url=origin.url(p), url_key=url_key(origin.url(p)),
                              host=host_of(origin.url(p)), next_capture_at=now) for p in paths])
    assert run_due(archive, WorkKind.CAPTURE).outcomes == {"archived": len(paths)}
    archive.store.close()
    with archive.db.session() as session:
        stamps = {c.url: warc_timestamp(c.captured_at) for c in session.query(Capture)}

    files = [archive.store.path_of(name) for name in archive.store.files()]
    with running_pywb(files, tmp_path / "pywb") as base:
        for path in paths:
            url = origin.url(path)
            response = requests.get(f"{base}/ours/{stamps[url]}id_/{url}", stream=True,
                                    timeout=10)
            assert response.status_code == 200, (path, response.status_code)
            assert response.raw.read(decode_content=False) == originals[path], path
