"""`archiver add --site`: the blog's own address for posts that do not say it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from archiver.archive import Archive
from archiver.cli import cli
from archiver.discover import add_source, discover
from archiver.errors import SourceError
from archiver.models import Citation, Link

POST = """---
title: No url in the front matter
---
See [my older post](https://myblog.example/2019/older/), [its home](https://www.myblog.example/)
and [the cited article](https://news.example.org/story).
"""


def _cited(archive: Archive) -> list[str]:
    with archive.db.session() as session:
        return list(session.scalars(select(Link.url).join(Citation).order_by(Citation.id)))


def _folder(tmp_path: Path) -> Path:
    posts = tmp_path / "posts"
    posts.mkdir()
    (posts / "post.md").write_text(POST, encoding="utf-8")
    return posts


def test_links_to_the_blog_itself_are_not_references(tmp_path: Path, archive: Archive) -> None:
    add_source(archive, str(_folder(tmp_path)), "https://myblog.example/")
    discover(archive)
    assert _cited(archive) == ["https://news.example.org/story"]


def test_giving_the_site_later_reads_the_posts_again(tmp_path: Path, archive: Archive) -> None:
    posts = _folder(tmp_path)
    add_source(archive, str(posts))
    discover(archive)
    assert len(_cited(archive)) == 3  # without it, the blog's own pages look like references
    source, new = add_source(archive, str(posts), "https://myblog.example")
    assert not new and source.site_url == "https://myblog.example"
    summary = discover(archive)
    assert summary.posts_changed == 1
    assert _cited(archive) == ["https://news.example.org/story"]


def test_site_on_an_idn_host_keeps_its_own_links_out(tmp_path: Path, archive: Archive) -> None:
    """`--site https://bücher.example/` (the blog's address as its author types it): links to
    the blog's own pages, however they are spelled, are not references."""
    posts = tmp_path / "posts"
    posts.mkdir()
    (posts / "post.md").write_text(
        "---\ntitle: Ein Beitrag\n---\n"
        "Mein [älterer Beitrag](https://bücher.example/2019/alt/), "
        "[die Startseite](https://xn--bcher-kva.example/) und "
        "[die Quelle](https://news.example.org/story).\n", encoding="utf-8")
    add_source(archive, str(posts), "https://bücher.example/")
    discover(archive)
    assert _cited(archive) == ["https://news.example.org/story"]


def test_site_with_a_path_does_not_swallow_the_whole_host(tmp_path: Path,
                                                         archive: Archive) -> None:
    """A blog at https://www.cs.example.edu/~alice/ cites a colleague's paper on the same
    university host: it is a reference (the colleague's page is not Alice's blog), while
    Alice's own posts are not."""
    posts = tmp_path / "posts"
    posts.mkdir()
    (posts / "post.md").write_text(
        "---\ntitle: Reading notes\n---\n"
        "As in [my earlier note](https://www.cs.example.edu/~alice/notes/1.html), "
        "[Bob's paper](https://www.cs.example.edu/~bob/papers/rot.pdf) shows it; "
        "[Alicia](https://www.cs.example.edu/~alicia/) agrees.\n",
        encoding="utf-8")
    add_source(archive, str(posts), "https://www.cs.example.edu/~alice")  # the slash forgotten
    discover(archive)
    assert _cited(archive) == ["https://www.cs.example.edu/~bob/papers/rot.pdf",
                               "https://www.cs.example.edu/~alicia/"]


@pytest.mark.parametrize("address", ["https://www.cs.example.edu/~alice/index.html",
                                     "https://www.cs.example.edu/~alice/blog.php"])
def test_a_site_given_as_its_index_page_still_owns_its_folder(tmp_path: Path,
                                                              archive: Archive,
                                                              address: str) -> None:
    """``--site https://www.cs.example.edu/~alice/index.html``, the address in the browser's
    bar for a shared host's user folder: the blog is the folder, /~alice/, so a link to
    Alice's other pages is no reference, and a colleague's page still is."""
    posts = tmp_path / "posts"
    posts.mkdir()
    (posts / "p.html").write_text(
        '<html><head><title>P</title></head><body><article>'
        '<a href="https://www.cs.example.edu/~alice/2009/other.html">my older post</a> '
        '<a href="https://www.cs.example.edu/~bob/">Bob</a></article></body></html>',
        encoding="utf-8")
    add_source(archive, str(posts), address)
    discover(archive)
    assert _cited(archive) == ["https://www.cs.example.edu/~bob/"]


@pytest.mark.parametrize("site", ["myblog.example", "ftp://myblog.example/", "https://", " "])
def test_a_site_that_is_no_web_address_is_refused(tmp_path: Path, archive: Archive,
                                                  site: str) -> None:
    with pytest.raises(SourceError, match="--site"):
        add_source(archive, str(_folder(tmp_path)), site)
    with archive.db.session() as session:
        assert session.scalars(select(Link)).first() is None


def test_the_command_takes_and_shows_the_site(tmp_path: Path, archive: Archive) -> None:
    env = {"ARCHIVER_DATA_DIR": str(archive.settings.data_dir), "ARCHIVER_LOG_LEVEL": "WARNING"}
    posts = _folder(tmp_path)
    result = CliRunner().invoke(cli, ["add", str(posts), "--site", "https://myblog.example/"],
                                env=env)
    assert result.exit_code == 0, result.output
    assert "(the blog: https://myblog.example/)" in result.output
    refused = CliRunner().invoke(cli, ["add", str(posts), "--site", "myblog"], env=env)
    assert refused.exit_code != 0 and "--site 'myblog'" in refused.output
