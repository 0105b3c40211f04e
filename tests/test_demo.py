"""`archiver demo`: the 2008 post's references end in the states the story says."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from archiver.demo.run import prepare_demo
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
