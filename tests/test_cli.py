"""The CLI as scripts use it: exit codes, clean JSON/CSV, clear errors, feed to replay."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from werkzeug import Request, Response

from archiver.archive import Archive
from archiver.cli import cli
from archiver.db import head_revision
from archiver.demo.fixtureweb import Site
from archiver.models import Capture, Check, Link
from tests.conftest import TEST_OVERRIDES, make_settings
from tests.test_warc import warcio_check

REPORT_KEYS = {"url", "state", "verdict", "http_status", "final_url", "checked_at", "failures",
               "captures", "archived_url", "posts"}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    values = {"ARCHIVER_DATA_DIR": str(tmp_path / "data"), "ARCHIVER_LOG_LEVEL": "WARNING"}
    for name, value in TEST_OVERRIDES.items():
        values["ARCHIVER_" + name.replace(".", "__").upper()] = str(value).lower() \
            if isinstance(value, bool) else str(value)
    return values


def invoke(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def blog(site: Site) -> Site:
    """A feed with one post citing three references on a second site."""
    refs = Site("refs").start()
    refs.page("/article", "<html><body><h1>An article</h1></body></html>")
    refs.redirect("/old", "/article", 301)
    post = (f'<p>See <a href="{refs.url("/article")}">the article</a>, '
            f'<a href="{refs.url("/old")}">an old address</a> and '
            f'<a href="{refs.url("/missing")}">a lost page</a>. '
            f'<a href="/about">About me</a>.</p>')
    site.page("/feed.xml",
              '<?xml version="1.0"?><rss version="2.0"><channel><title>Blog</title>'
              f'<link>{site.url("/")}</link><description>d</description>'
              f'<item><title>First post</title><link>{site.url("/first")}</link>'
              f'<pubDate>Sat, 14 Jun 2008 18:30:00 GMT</pubDate>'
              f'<description><![CDATA[{post}]]></description></item></channel></rss>',
              content_type="application/rss+xml")
    site.refs = refs  # type: ignore[attr-defined]
    yield site  # type: ignore[misc]
    refs.stop()


def test_commands_before_init_fail_clearly(env: dict[str, str]) -> None:
    code, _, err = invoke(env, "discover")
    assert code == 4
    assert "archiver init" in err


def test_unknown_source_type_is_an_error(env: dict[str, str], site: Site,
                                         tmp_path: Path) -> None:
    site.page("/image.png", b"\x89PNG\r\n\x1a\n", content_type="image/png")
    assert invoke(env, "init")[0] == 0
    code, _, err = invoke(env, "add", site.url("/image.png"))
    assert code == 3 and "error:" in err
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    code, _, err = invoke(env, "add", str(text_file))
    assert code == 3
    code, _, err = invoke(env, "add", str(tmp_path / "does-not-exist"))
    assert code == 3


def test_a_folder_source_is_kept_as_an_absolute_path_and_an_empty_one_refused(
        env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative folder was stored as typed, so a run from another folder read another one
    (or, for '', whatever folder it ran in)."""
    posts = tmp_path / "blog" / "posts"
    posts.mkdir(parents=True)
    assert invoke(env, "init")[0] == 0
    monkeypatch.chdir(tmp_path / "blog")
    code, _, err = invoke(env, "add", "posts")
    assert code == 0 and str(posts) in err, err
    for empty in ("", "  "):
        code, _, err = invoke(env, "add", empty)
        assert code == 3 and "no source given" in err, err


@pytest.mark.parametrize("setup", ["not a database", "a folder"])
def test_a_broken_database_is_one_clear_line(env: dict[str, str], tmp_path: Path,
                                             setup: str) -> None:
    assert invoke(env, "init")[0] == 0
    database = tmp_path / "data" / "archiver.sqlite3"
    database.unlink()
    if setup == "a folder":
        database.mkdir()
    else:
        database.write_text("plain text, not SQLite")
    result = CliRunner().invoke(cli, ["report"], env=env)
    assert result.exit_code == 5, result.output
    assert result.stderr.startswith("error: database: "), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("revision", "how"), [("9999", "newer than"),
                                               ("ffee01", "unknown to")])
def test_a_database_newer_than_the_code_is_one_clear_line(env: dict[str, str], tmp_path: Path,
                                                          revision: str, how: str) -> None:
    """An archive migrated by a newer version (an upgrade rolled back, an old container beside
    a new one): every command said "schema is missing or old: run `archiver init`", and init
    then ended in an Alembic traceback."""
    assert invoke(env, "init")[0] == 0
    with sqlite3.connect(tmp_path / "data" / "archiver.sqlite3") as connection:
        connection.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    connection.close()
    expected = (f"error: the database is at migration {revision}, {how} this archiver "
                f"({head_revision()}): upgrade link-archiver\n")
    for command in ("init", "report"):
        result = CliRunner().invoke(cli, [command], env=env)
        assert (result.exit_code, result.stderr) == (5, expected), result.output


def test_unwritable_outputs_are_one_clear_line(env: dict[str, str], tmp_path: Path) -> None:
    assert invoke(env, "init")[0] == 0
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    result = CliRunner().invoke(cli, ["export", "--format", "cdxj", "-o",
                                      str(a_file / "x.cdxj")], env=env)
    assert result.exit_code == 5 and result.stderr.startswith("error: "), result.stderr
    assert a_file.read_text() == "x"
    result = CliRunner().invoke(cli, ["export", "--format", "wacz", "-o", ""], env=env)
    assert result.exit_code == 2 and "give a file name" in result.stderr, result.stderr


def test_export_refuses_to_replace_the_secret_key(env: dict[str, str], tmp_path: Path) -> None:
    """It refused the database and the WARC folder, but silently replaced the secret key
    (every web session signed with it lost, the key now a readable CDXJ file)."""
    assert invoke(env, "init")[0] == 0
    key_file = tmp_path / "data" / "secret.key"
    key = key_file.read_text()
    for fmt in ("cdxj", "wacz"):
        result = CliRunner().invoke(cli, ["export", "--format", fmt, "-o", str(key_file)],
                                    env=env)
        assert result.exit_code == 2, result.output
        assert result.stderr == f"error: {key_file} is the archive's secret key: write the " \
                                "export elsewhere\n"
    assert key_file.read_text() == key


def test_bad_config_is_an_error(env: dict[str, str]) -> None:
    code, _, err = invoke({**env, "ARCHIVER_FETCH__TIMEOUT": "forever"}, "init")
    assert code == 2 and "fetch.timeout" in err


def test_init_twice_keeps_the_secret_key(env: dict[str, str], tmp_path: Path) -> None:
    """A second `archiver init` keeps the key (web sessions survive an upgrade); the key is
    the owner's alone."""
    assert invoke(env, "init")[0] == 0
    key_file = tmp_path / "data" / "secret.key"
    key = key_file.read_text()
    assert key.strip() and key_file.stat().st_mode & 0o777 == 0o600
    assert invoke(env, "init")[0] == 0
    assert key_file.read_text() == key


def test_init_mends_an_empty_secret_key(env: dict[str, str], tmp_path: Path) -> None:
    """An init that died (or a full disk) between creating secret.key and writing it left the
    file empty; the web refuses to start and says to run `archiver init`, which kept the
    empty file, so following the advice changed nothing."""
    from web import load_secret_key

    assert invoke(env, "init")[0] == 0
    key_file = tmp_path / "data" / "secret.key"
    key_file.write_text("")
    assert invoke(env, "init")[0] == 0
    assert load_secret_key(make_settings(tmp_path / "data"))
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert sorted(path.name for path in key_file.parent.glob("*secret*")) == ["secret.key"]


def test_feed_to_report_to_replay(env: dict[str, str], blog: Site) -> None:
    refs: Site = blog.refs  # type: ignore[attr-defined]
    assert invoke(env, "init")[0] == 0
    assert invoke(env, "add", blog.url("/feed.xml"))[0] == 0
    code, out, err = invoke(env, "run")
    assert code == 0, err
    assert "discover: 1 sources, 1 new posts" in err

    code, out, _ = invoke(env, "-q", "report", "--format", "json")
    assert code == 0
    rows = {row["url"]: row for row in json.loads(out)}
    assert set(rows) == {refs.url("/article"), refs.url("/old"), refs.url("/missing")}
    for row in rows.values():
        assert set(row) >= REPORT_KEYS
        assert row["posts"] == [blog.url("/first")]
    article = rows[refs.url("/article")]
    assert (article["state"], article["verdict"], article["http_status"]) == ("alive", "ok", 200)
    assert article["captures"] == 2  # its own capture and the end of /old's redirect chain
    assert article["archived_url"].startswith("/web/")
    assert article["archived_url"].endswith("/" + refs.url("/article"))
    moved = rows[refs.url("/old")]
    assert (moved["verdict"], moved["final_url"]) == ("redirect", refs.url("/article"))
    missing = rows[refs.url("/missing")]
    assert (missing["state"], missing["verdict"], missing["failures"]) == (
        "failing", "not_found", 1)

    code, out, _ = invoke(env, "-q", "report", "--format", "csv", "--state", "alive")
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert {row["url"] for row in parsed} == {refs.url("/article"), refs.url("/old")}

    # The archived copy replays the origin's bytes, links rewritten into the archive.
    from web import create_app

    settings_env = env
    from archiver.settings import load_settings

    with Archive.open(load_settings(env=settings_env)) as archive:
        client = create_app(archive.settings, archive).test_client()
        stamp = article["archived_url"].split("/")[2]
        response = client.get(f"/web/{stamp}mp_/{refs.url('/article')}")
        assert response.status_code == 200
        assert response.data == b"<html><body><h1>An article</h1></body></html>"
        assert response.headers["Content-Security-Policy"].startswith("sandbox;")
        with archive.db.session() as session:
            before = [(c.url, c.warc_file, c.offset, c.length, c.payload_digest)
                      for c in session.scalars(select(Capture).order_by(Capture.id))]
        files = [archive.store.path_of(name) for name in archive.store.files()]
    assert warcio_check(*files).returncode == 0

    # The index is rebuilt from the WARC files alone, identical.
    code, _, err = invoke(env, "reindex")
    assert code == 0, err
    with Archive.open(load_settings(env=env)) as archive, archive.db.session() as session:
        after = [(c.url, c.warc_file, c.offset, c.length, c.payload_digest)
                 for c in session.scalars(select(Capture).order_by(Capture.id))]
        junk = archive.store.directory / "stray.warc.gz"
    assert sorted(after) == sorted(before)

    # A file that is not WARC stops a reindex with its name, and the index is left as it was.
    junk.write_bytes(os.urandom(200))
    code, _, err = invoke(env, "reindex")
    assert code == 5 and "stray.warc.gz: not readable as WARC" in err, err
    with Archive.open(load_settings(env=env)) as archive, archive.db.session() as session:
        assert session.scalar(select(func.count(Capture.id))) == len(before)


def test_run_goes_on_past_a_failing_source_and_exits_1(env: dict[str, str], blog: Site,
                                                       tmp_path: Path) -> None:
    """A source that fails (a folder deleted since) stopped 'run' after discovering: the
    other sources' links were never captured or checked."""
    gone = tmp_path / "old-posts"
    gone.mkdir()
    assert invoke(env, "init")[0] == 0
    assert invoke(env, "add", blog.url("/feed.xml"))[0] == 0
    assert invoke(env, "add", str(gone))[0] == 0
    gone.rmdir()
    code, _, err = invoke(env, "run")
    assert code == 1, err
    assert "error: " in err and "capture: 3 of 3 links" in err and "check: 3 of 3 links" in err


def test_second_discover_finds_nothing_new(env: dict[str, str], blog: Site) -> None:
    invoke(env, "init")
    invoke(env, "add", blog.url("/feed.xml"))
    invoke(env, "discover")
    code, _, err = invoke(env, "discover")
    assert code == 0
    assert "0 new posts, 0 changed, 0 new links" in err


def test_config_command_redacts(env: dict[str, str]) -> None:
    code, out, _ = invoke({**env, "ARCHIVER_SECRET_KEY": "topsecret"}, "config")
    assert code == 0
    assert json.loads(out)["secret_key"] == "<redacted>"
    assert "topsecret" not in out


def test_installed_command_has_web_commands() -> None:
    result = subprocess.run([sys.executable, "-c", "from archiver.cli import main; main()",
                             "--help"], capture_output=True, text=True, check=True)
    for command in ("init", "add", "discover", "capture", "check", "run", "report", "serve",
                    "web", "scheduler", "demo", "config", "reindex"):
        assert f"  {command} " in result.stdout, command


def test_first_run_messages_say_what_happened_and_what_to_do(
        env: dict[str, str], blog: Site, tmp_path: Path) -> None:
    """A newcomer's walk: an empty run, a source added twice, a post that does not exist."""
    assert invoke(env, "init")[0] == 0
    for kind in ("capture", "check"):
        code, _, err = invoke(env, kind)
        assert code == 0
        assert f"{kind}: nothing due now (no links to {kind} yet" in err
        assert "0 of 0" not in err

    _, _, err = invoke(env, "add", blog.url("/feed.xml"))
    assert f"added feed source #1: {blog.url('/feed.xml')}" in err
    _, _, err = invoke(env, "add", blog.url("/feed.xml"))
    assert f"already added as source #1 (feed): {blog.url('/feed.xml')}" in err

    assert invoke(env, "run")[0] == 0
    code, _, err = invoke(env, "capture")
    assert code == 0
    # Every link was just captured, so the next capture is a day or more away.
    assert re.fullmatch(r"capture: nothing due now \(next: \d{4}-\d\d-\d\d \d\d:\d\d UTC, "
                        r"in \d+d \d+h, or --all to do every link now\)\n", err), err

    output = str(tmp_path / "one.cdxj")
    code, _, err = invoke(env, "export", "--format", "cdxj", "-o", output, "--post", "99")
    assert (code, err.strip()) == (2, "error: --post 99: no such post")
    assert not os.path.exists(output)
    code, _, err = invoke(env, "export", "--format", "wacz", "-o", str(tmp_path / "one.wacz"),
                          "--post", "1")
    assert code == 0
    assert re.search(r"\(\d+ records, 1 WARC file, \d+ pages\)", err), err


def test_hash_password_prints_the_hash_alone_on_stdout(env: dict[str, str]) -> None:
    code, out, err = invoke(env, "hash-password", "--password", "correct horse battery")
    assert code == 0
    hashed = out.strip()
    assert "\n" not in hashed and hashed.count("$") >= 2
    assert err == ("put it in your settings file as:\n[web]\n"
                   f"admin_password_hash = '{hashed}'\n")


def test_capture_says_when_the_due_links_are_another_runs(env: dict[str, str], blog: Site) -> None:
    from archiver.jobs import WorkKind, claim_due
    from archiver.settings import load_settings

    assert invoke(env, "init")[0] == 0
    assert invoke(env, "add", blog.url("/feed.xml"))[0] == 0
    assert invoke(env, "discover")[0] == 0
    with Archive.open(load_settings(env=env)) as archive:
        assert len(claim_due(archive, WorkKind.CAPTURE, None)) == 3  # another run's lease
    code, _, err = invoke(env, "capture")
    assert code == 0
    assert err == ("capture: nothing left to do now: the links due are in another run's hands "
                   "(it finishes them, or gives them back when its lease runs out)\n")


def test_a_dead_link_removed_from_its_post_no_longer_fails_the_report(
        env: dict[str, str], tmp_path: Path) -> None:
    """The author's CI gate: `report` exits 1 on a dead reference; the author fixes the post
    (the dead link taken out); the gate passes again.  The link stays in the archive, listed
    with --uncited and said to be cited by no post."""
    from archiver.settings import load_settings

    refs = Site("refs").start()
    try:
        refs.page("/alive", "<html><body><h1>Still here</h1></body></html>")
        gone = refs.url("/gone")  # answers 404
        posts = tmp_path / "posts"
        posts.mkdir()
        post = posts / "post.md"
        head = "---\ntitle: P\nurl: https://myblog.example/p/\n---\n"
        post.write_text(f"{head}[gone]({gone}) and [alive]({refs.url('/alive')})\n",
                        encoding="utf-8")
        assert invoke(env, "init")[0] == 0
        assert invoke(env, "add", str(posts))[0] == 0
        assert invoke(env, "discover")[0] == 0
        for _ in range(3):  # three failures (spacing 0 s in the tests): dead
            assert invoke(env, "check", "--all")[0] == 0
        code, out, _ = invoke(env, "-q", "report", "--format", "json")
        rows = {row["url"]: row for row in json.loads(out)}
        assert code == 1
        assert (rows[gone]["state"], rows[gone]["cited"]) == ("dead", True)

        post.write_text(f"{head}[alive]({refs.url('/alive')})\n", encoding="utf-8")
        assert invoke(env, "discover")[0] == 0
        code, out, _ = invoke(env, "-q", "report", "--format", "json")
        assert code == 0
        assert [row["url"] for row in json.loads(out)] == [refs.url("/alive")]

        code, out, _ = invoke(env, "-q", "report", "--format", "json", "--uncited")
        rows = {row["url"]: row for row in json.loads(out)}
        assert code == 1  # asked for, a dead link listed still fails the run
        assert (rows[gone]["state"], rows[gone]["cited"], rows[gone]["posts"]) == (
            "dead", False, [])
        code, out, _ = invoke(env, "-q", "report", "--uncited")
        assert f"{gone}  (no post cites it now)" in out
        with Archive.open(load_settings(env=env)) as archive, archive.db.session() as session:
            kept = session.scalars(select(Link).where(Link.url == gone)).one()
            assert session.scalar(select(func.count(Check.id))
                                  .where(Check.link_id == kept.id)) == 3
    finally:
        refs.stop()


def test_hashbang_links_are_fetched_without_their_fragment_and_replayed(
        env: dict[str, str], tmp_path: Path) -> None:
    """Two tweets cited as the web wrote them in 2011 (…/#!/user/status/N) are two links,
    each checked and archived; what is fetched, captured and replayed is the page the
    server has (a fragment is never sent), found under each link's own archived address."""
    from archiver.settings import load_settings
    from web import create_app

    social = Site("social").start()
    try:
        sent: list[str] = []  # request targets as they came on the wire

        def home(request: Request) -> Response:
            sent.append(request.environ["REQUEST_URI"])
            return Response("<html><body><h1>Social home</h1></body></html>",
                            content_type="text/html")

        social.route("/", home)
        jack, biz = social.url("/#!/jack/status/20"), social.url("/#!/biz/status/21")
        posts = tmp_path / "posts"
        posts.mkdir()
        (posts / "2011.md").write_text(
            f"---\ntitle: 2011\nurl: https://myblog.example/2011/\n---\n[Jack]({jack}) "
            f"answered [Biz]({biz}) on [the site]({social.url('/')}).\n", encoding="utf-8")
        assert invoke(env, "init")[0] == 0
        assert invoke(env, "add", str(posts))[0] == 0
        code, _, err = invoke(env, "run")
        assert code == 0, err
        assert sent and set(sent) == {"/"}  # no fragment reached the server
        code, out, _ = invoke(env, "-q", "report", "--format", "json")
        rows = {row["url"]: row for row in json.loads(out)}
        assert set(rows) == {jack, biz, social.url("/")}
        with Archive.open(load_settings(env=env)) as archive:
            client = create_app(archive.settings, archive).test_client()
            for url in (jack, biz):
                assert (rows[url]["state"], rows[url]["verdict"]) == ("alive", "ok")
                assert rows[url]["archived_url"].endswith("/" + url)
                # A browser keeps the fragment to itself: the archive gets the page's address.
                response = client.get(rows[url]["archived_url"].split("#", 1)[0].replace(
                    "/" + social.url("/"), "mp_/" + social.url("/"), 1))
                assert response.status_code == 200
                assert b"Social home" in response.data
    finally:
        social.stop()


def test_adding_the_blogs_home_page_says_it_reads_the_feed_it_names(
        env: dict[str, str], blog: Site) -> None:
    blog.page("/", '<html><head><title>Blog</title><link rel="alternate" '
                   'type="application/rss+xml" href="/feed.xml"></head><body></body></html>')
    assert invoke(env, "init")[0] == 0
    code, _, err = invoke(env, "add", blog.url("/"))
    assert code == 0
    assert err == (f"{blog.url('/')} is the blog's home page; it names its feed, which is "
                   f"read for the blog's posts\nadded feed source #1: {blog.url('/feed.xml')}\n")
