"""WARC tools: verify the archive, import other tools' WARC/WACZ files, export CDXJ and WACZ.

Real loopback sites, real files and the real programs other archivists use (wget, py-wacz's
validator and pywb from the interoperability environment).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from werkzeug.wrappers import Response

from archiver.archive import Archive, initialise
from archiver.cli import cli
from archiver.clock import warc_timestamp
from archiver.demo.fixtureweb import Site
from archiver.errors import StorageError
from archiver.jobs import WorkKind, run_due
from archiver.models import Capture, Link, Post
from archiver.urls import url_key
from archiver.warc.export import export_wacz
from archiver.warc.importer import import_files
from archiver.warc.reader import scan_warc
from archiver.warc.verify import verify
from tests.conftest import TEST_OVERRIDES, discover_posts, make_settings, post
from tests.test_interop import PNG, running_pywb, tool

PAGE = ('<html><head><title>An  article &amp; more</title>'
        '<link rel="stylesheet" href="/style.css"></head>'
        '<body><p>Caf\u00e9 society</p><img src="/pixel.png"></body></html>')


# -- set-up --------------------------------------------------------------------------------

@pytest.fixture
def refs(site: Site) -> Site:
    """A site with a page, its stylesheet (sent chunked) and image, a redirect and a second page."""
    site.page("/article.html", PAGE)
    site.route("/style.css", lambda _r: Response(iter([b"body{", b"color:red}"]),
                                                 mimetype="text/css"))
    site.page("/pixel.png", PNG, content_type="image/png")
    site.redirect("/old", "/article.html", 301)
    site.page("/other.html", "<html><head><title>Other</title></head><body>o</body></html>")
    return site


@pytest.fixture
def filled(archive: Archive, refs: Site, tmp_path: Path) -> Archive:
    """Two posts (the first cites the article and the redirect, the second the other page),
    discovered and captured through the normal jobs."""
    discover_posts(
        archive, tmp_path / "posts",
        post("First", "https://blog.example/first",
             f"See [the article]({refs.url('/article.html')}) and [old]({refs.url('/old')})."),
        post("Second", "https://blog.example/second",
             f"See [the other one]({refs.url('/other.html')}).", date="2008-06-15"))
    assert run_due(archive, WorkKind.CAPTURE).outcomes == {"archived": 3}
    archive.store.close()
    return archive


def post_id(archive: Archive, url: str) -> int:
    with archive.db.session() as session:
        return int(session.scalars(select(Post.id).where(Post.url == url)).one())


def cli_env(archive: Archive) -> dict[str, str]:
    values = {"ARCHIVER_DATA_DIR": str(archive.settings.data_dir),
              "ARCHIVER_LOG_LEVEL": "WARNING"}
    for name, value in TEST_OVERRIDES.items():
        values["ARCHIVER_" + name.replace(".", "__").upper()] = str(value).lower() \
            if isinstance(value, bool) else str(value)
    return values


def invoke(archive: Archive, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=cli_env(archive), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@contextmanager
def fresh_archive(path: Path) -> Iterator[Archive]:
    settings = make_settings(path)
    initialise(settings)
    with Archive.open(settings) as opened:
        yield opened


def replay(archive: Archive, url: str, follow: bool = True) -> tuple[int, bytes, str]:
    """The archived document for ``url`` (status, body, Location): ``/web/<url>`` redirects
    to the latest capture, whose bare form (``mp_``) is the document itself."""
    from web import create_app

    client: FlaskClient = create_app(archive.settings, archive).test_client()
    found = client.get("/web/" + url)
    if found.status_code != 302:
        return found.status_code, found.data, ""
    stamp = found.headers["Location"].split("/web/", 1)[1].split("/", 1)[0]
    response = client.get(f"/web/{stamp}mp_/{url}", follow_redirects=follow)
    return response.status_code, response.data, response.headers.get("Location", "")


def snapshot(archive: Archive) -> tuple[list[str], int]:
    """Everything in the WARC folder (temporary files included) and the index size."""
    with archive.db.session() as session:
        count = session.scalar(select(func.count(Capture.id))) or 0
    return sorted(os.listdir(archive.store.directory)), count


def first_response(archive: Archive, url: str) -> Capture:
    with archive.db.session() as session:
        return session.scalars(select(Capture).where(  # type: ignore[return-value]
            Capture.url == url, Capture.record_type == "response")).first()


# -- verify --------------------------------------------------------------------------------

def test_verify_is_clean_on_our_captures(filled: Archive) -> None:
    assert verify(filled) == []
    code, out, err = invoke(filled, "verify")
    assert code == 0, out + err
    assert out == ""
    count = snapshot(filled)[1]
    assert count >= 5  # pages, the redirect, requisites and revisits
    assert f"verify: {count} captures in 1 WARC file, 0 problems" in err


def test_verify_reports_a_corrupted_byte(filled: Archive, refs: Site) -> None:
    capture = first_response(filled, refs.url("/article.html"))
    path = filled.store.path_of(capture.warc_file)
    data = bytearray(path.read_bytes())
    data[capture.offset + capture.length // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    problems = verify(filled)
    assert any(p.offset == capture.offset and p.warc_file == capture.warc_file
               for p in problems), problems
    code, out, _ = invoke(filled, "verify")
    assert code == 1
    assert f"{capture.warc_file}@{capture.offset}: " in out


def test_verify_checks_digests_of_a_record_changed_inside(filled: Archive, refs: Site) -> None:
    """A record whose bytes were altered and re-gzipped: gzip is fine, digests are not."""
    capture = first_response(filled, refs.url("/article.html"))
    raw = gzip.decompress(filled.store.read_record_bytes(capture.warc_file, capture.offset,
                                                         capture.length))
    forged = gzip.compress(raw.replace(b"Caf\xc3\xa9", b"Cafe!"))
    path = filled.store.path_of(capture.warc_file)
    whole = path.read_bytes()
    path.write_bytes(whole[:capture.offset] + forged + whole[capture.offset + capture.length:])
    shift = len(forged) - capture.length
    with filled.db.session() as session:
        session.execute(update(Capture).where(Capture.id == capture.id)
                        .values(length=len(forged)))
        session.execute(update(Capture).where(Capture.warc_file == capture.warc_file,
                                              Capture.offset > capture.offset)
                        .values(offset=Capture.offset + shift))
    messages = [p.message for p in verify(filled)]
    assert any("block digest does not match" in m for m in messages), messages
    assert any("payload digest does not match" in m for m in messages), messages
    assert invoke(filled, "verify")[0] == 1


def test_verify_reports_a_truncated_file(filled: Archive) -> None:
    name = filled.store.files()[-1]
    path = filled.store.path_of(name)
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(size - 7)
    problems = verify(filled)
    assert any(p.warc_file == name and "partial tail" in p.message for p in problems), problems
    assert invoke(filled, "verify")[0] == 1


def test_verify_reports_a_row_at_a_wrong_offset(filled: Archive, refs: Site) -> None:
    capture = first_response(filled, refs.url("/other.html"))
    with filled.db.session() as session:
        session.execute(update(Capture).where(Capture.id == capture.id)
                        .values(offset=capture.offset + 1))
    problems = verify(filled)
    assert [p.offset for p in problems] == [capture.offset + 1], problems
    code, out, err = invoke(filled, "verify")
    assert code == 1
    assert len(out.splitlines()) == 1 and "1 problem\n" in err


def test_verify_reports_a_missing_file(filled: Archive) -> None:
    name = filled.store.files()[0]
    filled.store.path_of(name).unlink()
    problems = verify(filled)
    assert problems and all("missing" in p.message for p in problems)


def index_rows(archive: Archive) -> list[tuple[str, str, int, str]]:
    """(URL, WARC file, offset, record ID) of every index row."""
    with archive.db.session() as session:
        return sorted((c.url, c.warc_file, c.offset, c.record_id)
                      for c in session.scalars(select(Capture)))


def test_reindex_keeps_the_whole_records_after_damage_in_the_middle_of_a_file(
        filled: Archive, refs: Site) -> None:
    """A few flipped bytes inside one record (a bad sector, a bad copy): reindex names the
    damage and exits 5, but reads on at the next whole record, so every other capture stays
    in the index and in replay."""
    damaged = first_response(filled, refs.url("/article.html"))
    path = filled.store.path_of(damaged.warc_file)
    data = bytearray(path.read_bytes())
    for at in range(damaged.offset + damaged.length // 2, damaged.offset + damaged.length // 2
                    + 30):
        data[at] ^= 0x55
    path.write_bytes(bytes(data))
    assert {p.offset for p in verify(filled)} == {damaged.offset}  # only the damaged record
    before = index_rows(filled)
    code, _, err = invoke(filled, "reindex")
    assert code == StorageError.exit_code and "Traceback" not in err, err
    assert f"{damaged.warc_file}: not readable as WARC from byte {damaged.offset}" in err, err
    assert index_rows(filled) == [row for row in before if row[2] != damaged.offset]
    assert replay(filled, refs.url("/other.html"))[0] == 200
    assert replay(filled, refs.url("/pixel.png"))[1] == PNG


# -- import: wget ---------------------------------------------------------------------------

def wget_warc(url: str, workdir: Path, compress: bool = True) -> Path:
    """Archive ``url`` and its page requisites with wget, never leaving loopback."""
    wget = shutil.which("wget")
    if wget is None:
        pytest.fail("wget is missing: install it (apt-get install wget)")
    workdir.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}
    command = [wget, "--no-config", "--no-proxy", "-e", "robots=off", "--page-requisites",
               "--tries=1", "--timeout=10", "--no-verbose", "--directory-prefix",
               str(workdir / "files"), f"--warc-file={workdir / 'wget'}", url]
    if not compress:
        command.insert(-1, "--no-warc-compression")
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    path = workdir / ("wget.warc.gz" if compress else "wget.warc")
    assert path.exists()
    return path


def test_wget_warc_imports_and_replays(archive: Archive, refs: Site, tmp_path: Path) -> None:
    page = refs.url("/article.html")
    with archive.db.session() as session:  # the archive already tracks the page, not the image
        session.add(Link(url=page, url_key=url_key(page), host=f"127.0.0.1:{refs.port}"))
    warc = wget_warc(page, tmp_path / "wget")
    summary = import_files(archive, [warc])
    assert summary.imported == ["imported-wget.warc.gz"]
    assert summary.records >= 3 and summary.links == 1
    assert verify(archive) == []  # wget's digests (over the chunked stylesheet) verify

    status, body, _ = replay(archive, refs.url("/pixel.png"))
    assert (status, body)[:2] == (200, PNG)
    status, body, _ = replay(archive, page)
    assert status == 200 and "Caf\u00e9 society" in body.decode()
    status, body, _ = replay(archive, refs.url("/style.css"))
    assert (status, body)[:2] == (200, b"body{color:red}")  # de-chunked for the reader
    with archive.db.session() as session:
        assert session.scalar(select(func.count(Capture.id)).where(
            Capture.url_key == url_key(page))) == 1


def test_uncompressed_wget_warc_imports(archive: Archive, refs: Site, tmp_path: Path) -> None:
    warc = wget_warc(refs.url("/article.html"), tmp_path / "wget", compress=False)
    summary = import_files(archive, [warc])
    assert summary.imported == ["imported-wget.warc"]
    assert verify(archive) == []
    assert replay(archive, refs.url("/pixel.png"))[:2] == (200, PNG)
    assert replay(archive, refs.url("/style.css"))[:2] == (200, b"body{color:red}")
    # The same records gzipped record by record are not indexed twice.
    data = warc.read_bytes()
    packed = tmp_path / "packed.warc.gz"
    packed.write_bytes(b"".join(gzip.compress(data[r.offset:r.offset + r.length])
                                for r in scan_warc(warc)))
    before = snapshot(archive)
    again = import_files(archive, [packed])
    assert (again.imported, again.skipped) == ([], [str(packed)])
    assert snapshot(archive) == before


# -- export ---------------------------------------------------------------------------------

def wacz_validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("wacz"), "validate", "-f", str(path)], capture_output=True,
                          text=True, timeout=120, check=False)


def cdxj_rows(text: str) -> list[tuple[str, str, dict[str, str]]]:
    rows = []
    for line in text.splitlines():
        key, stamp, fields = line.split(" ", 2)
        rows.append((key, stamp, json.loads(fields)))
    return rows


def test_wacz_exports_validate(filled: Archive, refs: Site, tmp_path: Path) -> None:
    whole = export_wacz(filled, tmp_path / "all.wacz")
    first = post_id(filled, "https://blog.example/first")
    single = export_wacz(filled, tmp_path / "first.wacz", first)
    assert whole.records == snapshot(filled)[1]
    for path in (whole.path, single.path):
        result = wacz_validate(path)
        assert result.returncode == 0 and "Validation succeeded" in result.stdout, \
            result.stdout + result.stderr

    with zipfile.ZipFile(single.path) as package:
        names = package.namelist()
        warcs = [n for n in names if n.startswith("archive/")]
        assert len(warcs) == 1 and warcs[0].startswith(f"archive/post-{first}-")
        assert all(package.getinfo(n).compress_type == zipfile.ZIP_STORED for n in warcs)
        assert {"indexes/index.cdxj", "pages/pages.jsonl", "datapackage.json",
                "datapackage-digest.json"} <= set(names)
        rows = cdxj_rows(package.read("indexes/index.cdxj").decode())
        pages = [json.loads(line) for line in package.read("pages/pages.jsonl").splitlines()]
        datapackage = json.loads(package.read("datapackage.json"))
    # The cited page, where the cited redirect leads, and what the page needs to render.
    assert {fields["url"] for _, _, fields in rows} == {
        refs.url(p) for p in ("/article.html", "/old", "/style.css", "/pixel.png")}
    assert single.records == len(rows)
    assert all(fields["filename"] == warcs[0].removeprefix("archive/") for *_, fields in rows)
    assert pages[0]["format"] == "json-pages-1.0"
    titles = {page["url"]: page.get("title") for page in pages[1:]}
    assert titles == {refs.url("/article.html"): "An article & more", refs.url("/old"): "old"}
    assert datapackage["wacz_version"] == "1.1.1"
    assert datapackage["profile"] == "data-package"


def test_cdxj_export_is_sorted_and_pywb_replays_from_it(filled: Archive, refs: Site,
                                                        tmp_path: Path) -> None:
    code, _, err = invoke(filled, "export", "--format", "cdxj", "--output",
                          str(tmp_path / "index.cdxj"))
    assert code == 0, err
    code, _, err = invoke(filled, "export", "--format", "cdxj", "--post", "999", "--output",
                          str(tmp_path / "none.cdxj"))
    assert code == 2 and "--post 999: no such post" in err
    assert not (tmp_path / "none.cdxj").exists()
    text = (tmp_path / "index.cdxj").read_text()
    lines = text.splitlines()
    assert lines == sorted(lines) and len(lines) == snapshot(filled)[1]
    rows = cdxj_rows(text)
    assert [(k, s) for k, s, _ in rows] == sorted((k, s) for k, s, _ in rows)
    with filled.db.session() as session:
        expected = {(c.url_key, warc_timestamp(c.captured_at), c.url, str(c.offset),
                     str(c.length), c.warc_file) for c in session.scalars(select(Capture))}
    assert {(k, s, f["url"], f["offset"], f["length"], f["filename"]) for k, s, f in rows} \
        == expected
    for _, _, fields in rows:
        assert set(fields) == {"url", "mime", "status", "digest", "length", "offset",
                               "filename"}
        assert not fields["digest"].startswith("sha1:")

    # pywb replays from our WARC files plus our index, without indexing anything itself.
    article = first_response(filled, refs.url("/article.html"))
    files = [filled.store.path_of(name) for name in filled.store.files()]
    with running_pywb(files, tmp_path / "pywb", cdxj=tmp_path / "index.cdxj") as base:
        url = refs.url("/article.html")
        response = requests.get(f"{base}/ours/{warc_timestamp(article.captured_at)}id_/{url}",
                                timeout=10)
        assert response.status_code == 200
        assert response.content == PAGE.encode("utf-8")


# -- import: WACZ, repeats and bad input -----------------------------------------------------

def test_wacz_import_into_a_fresh_archive(filled: Archive, refs: Site, tmp_path: Path) -> None:
    first = post_id(filled, "https://blog.example/first")
    code, _, err = invoke(filled, "export", "--format", "wacz", "--post", str(first),
                          "--output", str(tmp_path / "first.wacz"))
    assert code == 0, err
    with zipfile.ZipFile(tmp_path / "first.wacz") as package:
        exported = len(package.read("indexes/index.cdxj").splitlines())
    page = refs.url("/article.html")
    with fresh_archive(tmp_path / "other") as other:
        with other.db.session() as session:
            session.add(Link(url=page, url_key=url_key(page), host=f"127.0.0.1:{refs.port}"))
        summary = import_files(other, [tmp_path / "first.wacz"])
        assert len(summary.imported) == 1 and summary.imported[0].startswith("imported-post-")
        assert (summary.records, summary.links) == (exported, 1)
        urls = {path: refs.url(path) for path in ("/old", "/pixel.png", "/style.css",
                                                  "/other.html")}
        refs.stop()  # replay comes from the archive, never the origin
        status, body, _ = replay(other, page)
        assert status == 200 and "Caf\u00e9 society" in body.decode()
        status, _, location = replay(other, urls["/old"], follow=False)
        assert status == 301 and location.endswith("/" + page)
        assert replay(other, urls["/pixel.png"])[:2] == (200, PNG)
        assert replay(other, urls["/style.css"])[:2] == (200, b"body{color:red}")
        assert replay(other, urls["/other.html"])[0] == 404  # another post's reference
        assert verify(other) == []

        before = snapshot(other)
        again = import_files(other, [tmp_path / "first.wacz"])
        assert (again.imported, again.records) == ([], 0)
        assert len(again.skipped) == 1
        assert snapshot(other) == before

        # The whole-archive package brings only the records not in the first one.
        whole = export_wacz(filled, tmp_path / "all.wacz")
        more = import_files(other, [tmp_path / "all.wacz"])
        assert more.records == whole.records - exported > 0
        assert snapshot(other)[1] == whole.records
        assert replay(other, urls["/other.html"])[0] == 200


def test_reimporting_our_own_warc_adds_nothing(filled: Archive) -> None:
    before = snapshot(filled)
    own = filled.store.path_of(filled.store.files()[0])
    summary = import_files(filled, [own])
    assert summary.imported == [] and summary.skipped == [str(own)]
    assert snapshot(filled) == before


def junk_inputs(folder: Path, good: Path) -> dict[str, Path]:
    folder.mkdir()
    text = folder / "notes.warc"
    text.write_text("this is not a WARC file\n")
    corrupt = folder / "corrupt.warc.gz"
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    cut = folder / "cut.warc.gz"
    cut.write_bytes(good.read_bytes()[:-9])
    empty_zip = folder / "empty.wacz"
    with zipfile.ZipFile(empty_zip, "w") as package:
        package.writestr("datapackage.json", "{}")
    evil = folder / "evil.wacz"
    with zipfile.ZipFile(evil, "w") as package:
        package.writestr("archive/ok.warc.gz", good.read_bytes())
        package.writestr("../evil", b"x")
    absolute = folder / "absolute.wacz"
    with zipfile.ZipFile(absolute, "w") as package:
        package.writestr("archive/ok.warc.gz", good.read_bytes())
        package.writestr("/etc/evil", b"x")
    forged = folder / "forged.wacz"
    with zipfile.ZipFile(forged, "w") as package:
        package.writestr("archive/ok.warc.gz", good.read_bytes())
        package.writestr("datapackage.json", json.dumps({"resources": [
            {"path": "archive/ok.warc.gz", "hash": "sha256:" + "0" * 64}]}))
    whole_gzip = folder / "whole.warc.gz"
    whole_gzip.write_bytes(gzip.compress(gzip.decompress(good.read_bytes())))
    return {"text": text, "corrupt": corrupt, "cut": cut, "whole_gzip": whole_gzip,
            "empty_zip": empty_zip,
            "evil": evil, "absolute": absolute, "forged": forged}


def test_bad_inputs_are_refused_and_leave_nothing(archive: Archive, refs: Site,
                                                  tmp_path: Path) -> None:
    good = wget_warc(refs.url("/article.html"), tmp_path / "wget")
    bad = junk_inputs(tmp_path / "junk", good)
    before = snapshot(archive)
    messages = {}
    for name, path in bad.items():
        with pytest.raises(StorageError) as caught:
            import_files(archive, [good, path])  # all or nothing: the good file is not kept
        messages[name] = str(caught.value)
        assert snapshot(archive) == before, name
    assert "not a WARC" in messages["text"]
    assert "unsafe path" in messages["evil"] and "'../evil'" in messages["evil"]
    assert "unsafe path" in messages["absolute"]
    assert "no WARC files" in messages["empty_zip"]
    assert "partial tail" in messages["cut"]
    assert "datapackage.json" in messages["forged"]
    assert "record by record" in messages["whole_gzip"]

    code, _, err = invoke(archive, "import", str(bad["text"]))
    assert code == StorageError.exit_code and "not a WARC" in err
    assert invoke(archive, "import", str(tmp_path / "missing.warc"))[0] != 0
    assert snapshot(archive) == before

    code, _, err = invoke(archive, "import", str(good))
    assert code == 0 and "1 files imported" in err, err


def test_reindex_reads_on_after_a_bad_sector_at_the_start_of_a_gzipped_file(
        archive: Archive, site: Site) -> None:
    """The first 4 KB of a ``.warc.gz`` are unreadable (zeroed: a bad sector, a torn copy).
    ``reindex`` promises to read on "at the next whole record after unreadable bytes" in a
    ``.warc.gz``; deciding by the first two bytes alone read this one as uncompressed WARC,
    resynced nothing, and dropped every record of the file from the index."""
    from archiver.errors import StorageError
    from archiver.net.client import HttpClient
    from archiver.warc.indexer import reindex

    client = HttpClient(archive.settings)
    for number in range(40):
        site.page(f"/doc{number}", os.urandom(600), content_type="application/octet-stream")
    locations = [archive.store.write_exchange(client.fetch(site.url(f"/doc{n}")).final)
                 for n in range(40)]
    client.close()
    archive.store.close()
    [name] = {location.warc_file for location in locations}
    path = archive.store.path_of(name)
    assert name.endswith(".warc.gz")
    data = bytearray(path.read_bytes())
    data[:4096] = bytes(4096)
    path.write_bytes(bytes(data))
    with pytest.raises(StorageError):
        reindex(archive)
    with archive.db.session() as session:
        from sqlalchemy import select

        from archiver.models import Capture
        indexed = set(session.scalars(select(Capture.offset)))
    whole_after = {location.offset for location in locations if location.offset > 4096}
    assert whole_after <= indexed, (len(whole_after), len(indexed))
