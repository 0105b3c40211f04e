"""`archiver demo`: the 2008 post's references end in the states the story says."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from archiver.demo.run import demo_announcer, prepare_demo
from archiver.models import Post
from archiver.report import link_rows, links_query
from tests.conftest import make_settings


def test_demo_archives_and_checks_the_soviet_story_references(tmp_path: Path) -> None:
    said: list[str] = []
    with prepare_demo(make_settings(tmp_path), say=said.append) as archive:
        with archive.db.session() as session:
            post = session.scalar(select(Post).where(Post.title == "The Soviet Story"))
            assert post is not None and post.published_at is not None
            assert post.published_at.year == 2008
            rows = {row["url"].split("/", 3)[3]: row
                    for row in link_rows(session, list(session.scalars(
                        links_query(post_id=post.id))))}
        from web import create_app

        client = create_app(archive.settings, archive).test_client()
        article = rows["wiki/The_Soviet_Story"]
        assert (article["state"], article["verdict"]) == ("alive", "ok")
        frame = client.get(article["archived_url"])
        assert frame.status_code == 200 and b"Archived copy" in frame.data
        replay = client.get(article["archived_url"].replace("/http", "mp_/http", 1))
        assert replay.status_code == 200
        assert b"Edv\xc4\xabns \xc5\xa0nore" in replay.data
        trailer = rows["watch?v=soviet-story-trailer"]
        assert trailer["state"] == "alive"
        economist = rows["blogs/easternapproaches/2008/06/the_soviet_story"]
        assert economist["verdict"] == "redirect_to_root"
        assert economist["state"] in {"failing", "dead"}
        moved = rows["the-soviet-story.html"]
        assert (moved["verdict"], moved["state"]) == ("redirect", "alive")
        assert moved["final_url"].endswith("/films/the-soviet-story/")
        page = client.get(f"/posts/{post.id}").get_data(as_text=True)
        assert page.count("archived copy") == 4
    assert any(line.startswith("discover: 1 sources, 2 new posts") for line in said)



def test_demo_says_what_to_open_how_to_stop_and_what_next(tmp_path: Path) -> None:
    said: list[str] = []
    with prepare_demo(make_settings(tmp_path), say=lambda _line: None) as archive:
        with archive.db.session() as session:
            post_id = session.scalar(select(Post.id).where(Post.title == "The Soviet Story"))
        announce = demo_announcer(archive, said.append)
        announce("serving on http://127.0.0.1:8000/")
        data_dir = archive.settings["data_dir"]
        from web import create_app

        page = create_app(archive.settings, archive).test_client().get(f"/posts/{post_id}")
        assert page.get_data(as_text=True).count("archived copy") == 4  # the page named
    assert said == [
        f"\nopen http://127.0.0.1:8000/posts/{post_id} : the 2008 post The Soviet Story and "
        "its references, each with its state and archived copy (Ctrl-C to stop)",
        f"the demo's data folder {data_dir} is kept after you stop; delete it when done",
        'next: archive your own blog, see "Using it on your blog" in README.md',
    ]
    announce("something else")  # any other message is passed on as it is
    assert said[-1] == "something else"


def test_demo_command_ends_with_the_address_and_no_scheduler_info_lines(
        tmp_path: Path) -> None:
    """The real command, as `make demo` runs it, until it serves; then Ctrl-C."""
    with socket.socket() as probe:  # a free port (the demo refuses port 0)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "TMPDIR": str(tmp_path), "ARCHIVER_LOG_LEVEL": "INFO"}
    child = subprocess.Popen(
        [sys.executable, "-c", "from archiver.cli import main; main()", "demo", "--port",
         str(port)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    lines: list[str] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("next: "):
                break
        time.sleep(1.0)  # the scheduler's first round starts once the port is bound
    finally:
        child.send_signal(signal.SIGINT)
        rest, _ = child.communicate(timeout=30)
    lines += rest.splitlines()
    text = "\n".join(lines)
    assert f"open http://127.0.0.1:{port}/posts/1 : the 2008 post The Soviet Story" in text
    assert "(Ctrl-C to stop)" in text
    assert re.search(r"the demo's data folder \S+archiver-demo-\S+ is kept after you stop", text)
    assert 'next: archive your own blog, see "Using it on your blog" in README.md' in text
    assert " INFO " not in text, text  # APScheduler's, and each link's, INFO lines
