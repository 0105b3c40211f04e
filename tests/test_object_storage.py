"""WARC files in S3-compatible object storage (``storage.url``), against a real S3 server on
loopback: captures are uploaded when their file closes, replay reads records by byte range,
reindex, verify, import and export work on the bucket, and a failed upload loses nothing."""

from __future__ import annotations

import uuid
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from archiver.archive import Archive, initialise
from archiver.cli import cli
from archiver.demo.fixtureweb import Site
from archiver.errors import ConfigError
from archiver.jobs import WorkKind, run_due
from archiver.models import Capture
from archiver.settings import Settings, env_var_name
from archiver.warc.export import export_wacz
from archiver.warc.importer import import_files
from archiver.warc.indexer import reindex
from archiver.warc.verify import verify
from tests.conftest import TEST_OVERRIDES, discover_posts, make_settings, post
from tests.s3_server import S3Server
from tests.test_import_hostile import child_env, crawl_of, stopped_in_its_insert
from tests.test_warc_tools import PAGE, cli_env, first_response, replay


def s3_settings(path: Path, s3: S3Server, bucket: str) -> Settings:
    return make_settings(path, **s3.settings_for(bucket))


def open_archive(settings: Settings) -> Archive:
    initialise(settings)
    return Archive.open(settings)


def capture_posts(archive: Archive, site: Site, folder: Path) -> None:
    """One post citing the site's article (with its stylesheet and image) and other page."""
    site.page("/article.html", PAGE)
    site.page("/style.css", "body{color:red}", content_type="text/css")
    site.page("/pixel.png", b"\x89PNG\r\n\x1a\nnot-really", content_type="image/png")
    site.page("/other.html", "<html><head><title>Other</title></head><body>o</body></html>")
    discover_posts(archive, folder, post(
        "First", "https://blog.example/first",
        f"See [the article]({site.url('/article.html')}) and "
        f"[the other]({site.url('/other.html')})."))
    assert run_due(archive, WorkKind.CAPTURE).outcomes == {"archived": 2}


def warc_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.warc*") if not p.name.endswith(".open"))


def index_rows(archive: Archive) -> list[tuple[str, str, int, int, str | None]]:
    with archive.db.session() as session:
        return sorted((c.url, c.warc_file, c.offset, c.length, c.payload_digest)
                      for c in session.scalars(select(Capture)))


def test_captures_are_uploaded_and_replayed_by_byte_range(s3: S3Server, site: Site,
                                                          tmp_path: Path) -> None:
    bucket = s3.new_bucket()
    with open_archive(s3_settings(tmp_path / "data", s3, bucket)) as archive:
        capture_posts(archive, site, tmp_path / "posts")
        written = archive.store.local_files()
        assert written, "records are written in the local folder first"
        archive.store.checkpoint()  # what a worker does after each batch
        assert warc_names(archive.store.directory) == []
        assert s3.keys(bucket) == [f"archive/warcs/{name}" for name in written]
        assert archive.store.files() == written

        s3.requests.clear()
        status, body, _ = replay(archive, site.url("/article.html"))
        assert status == 200
        assert "Caf\u00e9 society".encode() in body
        reads = [seen for seen in s3.requests if seen.method == "GET" and seen.range]
        capture = first_response(archive, site.url("/article.html"))
        wanted = f"bytes={capture.offset}-{capture.offset + capture.length - 1}"
        assert any(seen.range == wanted for seen in reads), s3.requests
        assert not any(seen.method == "GET" and not seen.range and capture.warc_file in
                       seen.path for seen in s3.requests), "a whole file was downloaded"

        assert verify(archive) == []
        before = index_rows(archive)
        assert reindex(archive) == len(before)
        assert index_rows(archive) == before


def test_export_and_metrics_read_the_bucket(s3: S3Server, site: Site, tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from web import create_app

    bucket = s3.new_bucket()
    with open_archive(s3_settings(tmp_path / "data", s3, bucket)) as archive:
        capture_posts(archive, site, tmp_path / "posts")
        archive.store.checkpoint()
        names = archive.store.files()
        listed = s3.client().list_objects_v2(Bucket=bucket)["Contents"]
        text = create_app(archive.settings, archive).test_client().get("/metrics").text
        samples = {sample.name: sample.value
                   for family in text_string_to_metric_families(text) for sample in family.samples}
        assert samples["archiver_warc_files"] == len(names) == len(listed)
        assert samples["archiver_warc_bytes"] == sum(item["Size"] for item in listed)
        out = tmp_path / "all.wacz"
        summary = export_wacz(archive, out)
    assert summary.warc_files == len(names)
    with zipfile.ZipFile(out) as package:
        stored = {info.filename for info in package.infolist()}
    assert {f"archive/{name}" for name in names} <= stored


def test_a_failed_upload_keeps_the_file_until_a_later_writer_uploads_it(
        s3: S3Server, site: Site, tmp_path: Path) -> None:
    bucket = f"later-{uuid.uuid4().hex[:12]}"  # not created yet: uploads fail
    settings = s3_settings(tmp_path / "data", s3, bucket)
    with open_archive(settings) as archive:
        capture_posts(archive, site, tmp_path / "posts")
        archive.store.checkpoint()
        kept = warc_names(archive.store.directory)
        assert kept, "the file stays in the folder when it cannot be uploaded"
        status, body, _ = replay(archive, site.url("/article.html"))
        assert status == 200 and b"society" in body
    s3.client().create_bucket(Bucket=bucket)
    with Archive.open(settings) as later:
        notes = later.prepare_store()  # what the next writer does before its first write
        assert [note for note in notes if note.startswith("uploaded ")] == \
            [f"uploaded {name}, left behind in the WARC folder" for name in kept]
        assert warc_names(later.store.directory) == []
        assert s3.keys(bucket) == [f"archive/warcs/{name}" for name in kept]
        status, body, _ = replay(later, site.url("/article.html"))
        assert status == 200 and b"society" in body


def test_imported_files_are_uploaded_before_they_are_indexed(s3: S3Server, site: Site,
                                                            tmp_path: Path) -> None:
    local = make_settings(tmp_path / "elsewhere")
    with open_archive(local) as other:  # a WARC made elsewhere, in a plain folder
        capture_posts(other, site, tmp_path / "posts")
        other.store.close()
        made = [other.store.path_of(name) for name in other.store.files()]
    bucket = s3.new_bucket()
    with open_archive(s3_settings(tmp_path / "data", s3, bucket)) as archive:
        summary = import_files(archive, made)
        assert len(summary.imported) == 1 and summary.records > 0
        assert warc_names(archive.store.directory) == []
        assert s3.keys(bucket) == [f"archive/warcs/{summary.imported[0]}"]
        status, body, _ = replay(archive, site.url("/other.html"))
        assert status == 200 and b"Other" in body
        again = import_files(archive, made)  # already there: skipped, nothing uploaded twice
        assert again.imported == [] and len(again.skipped) == 1
        assert len(s3.keys(bucket)) == 1


def test_health_reports_an_unreachable_bucket(s3: S3Server, tmp_path: Path) -> None:
    from web import create_app

    with open_archive(s3_settings(tmp_path / "data", s3, "no-such-bucket-here")) as archive:
        client = create_app(archive.settings, archive).test_client()
        answer = client.get("/healthz")
        assert answer.status_code == 503
        assert answer.get_json()["object_storage"].startswith("error:")
    bucket = s3.new_bucket()
    with open_archive(s3_settings(tmp_path / "data2", s3, bucket)) as archive:
        answer = create_app(archive.settings, archive).test_client().get("/healthz")
        assert answer.status_code == 200
        assert answer.get_json()["object_storage"] == "ok"


@pytest.mark.parametrize("url", ["ftp://bucket/x", "s3://", "s3:///prefix", "s3://b/p?x=1"])
def test_a_bad_storage_url_is_refused(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"storage\.url"):
        make_settings(tmp_path, storage__url=url)


def test_the_cli_refuses_a_bad_storage_url_with_exit_2(tmp_path: Path) -> None:
    with open_archive(make_settings(tmp_path / "data")) as archive:
        env = {**cli_env(archive), "ARCHIVER_STORAGE__URL": "ftp://nowhere/x"}
    result = CliRunner().invoke(cli, ["report"], env=env)
    assert result.exit_code == 2, result.output
    assert "storage.url" in result.stderr


def test_a_running_writer_uploads_its_failed_file_once_the_storage_is_back(
        s3: S3Server, site: Site, tmp_path: Path) -> None:
    """A worker runs for days: a file whose upload failed is uploaded by the same writer when a
    later file closes, not only by the next process."""
    bucket = f"outage-{uuid.uuid4().hex[:12]}"  # not created yet: uploads fail
    with open_archive(s3_settings(tmp_path / "data", s3, bucket)) as archive:
        archive.store.upload_retry_interval = 0.0
        capture_posts(archive, site, tmp_path / "posts")
        archive.store.checkpoint()
        failed = warc_names(archive.store.directory)
        assert failed
        s3.client().create_bucket(Bucket=bucket)
        site.page("/later.html", "<html><body>later</body></html>")
        discover_posts(archive, tmp_path / "posts", post(
            "Second", "https://blog.example/second", f"[Later]({site.url('/later.html')})."))
        assert run_due(archive, WorkKind.CAPTURE).outcomes == {"archived": 1}
        archive.store.checkpoint()
        assert warc_names(archive.store.directory) == []
        assert set(failed) < {key.rsplit("/", 1)[1] for key in s3.keys(bucket)}
        assert verify(archive) == []


def test_a_failed_import_keeps_the_object_another_machine_indexed(s3: S3Server,
                                                                 tmp_path: Path) -> None:
    """Two machines (each its own data folder and WARC folder, one database and bucket)
    import one crawl at once: A moved it into its folder and waited for the database; B put
    its copy in the bucket under the same name and committed.  A then failed on B's rows and,
    undoing its import, deleted the object B's rows point at."""
    database_url = f"sqlite:///{tmp_path / 'a' / 'archiver.sqlite3'}"
    storage = s3.settings_for(s3.new_bucket())
    bucket = storage["storage__url"].split("/")[2]
    first_settings = make_settings(tmp_path / "a", database_url=database_url, **storage)
    initialise(first_settings)
    crawl = crawl_of(tmp_path)
    placed = first_settings.warc_dir / "imported-crawl.warc.gz"
    values = {**TEST_OVERRIDES, "data_dir": str(tmp_path / "a"), "database_url": database_url,
              "log_level": "WARNING", **{name.replace("__", "."): value
                                         for name, value in storage.items()}}
    env = child_env({env_var_name(name): str(value).lower() if isinstance(value, bool)
                     else str(value) for name, value in values.items()})
    with stopped_in_its_insert(crawl, env, tmp_path / "a" / "archiver.sqlite3", placed) as first, \
            open_archive(make_settings(tmp_path / "b", database_url=database_url,
                                       **storage)) as second:
        summary = import_files(second, [crawl])
        assert summary.imported == [placed.name] and summary.records == 300
    _out, err = first.communicate(timeout=60)
    assert first.returncode == 5 and "Traceback" not in err and "INSERT" not in err, err
    assert err.splitlines()[-1].startswith(  # one line, not the statement and 300 rows
        "error: import failed, nothing was imported: another process indexed the same WARC "
        "records meanwhile ("), err
    assert f"archive/warcs/{placed.name}" in s3.keys(bucket)
    with Archive.open(first_settings) as archive:
        assert verify(archive) == []
    assert f"keeping {placed.name}" in err, err
