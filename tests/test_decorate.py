"""Robust Links decoration of a post's HTML: only archived links change, and only by the three
attributes; every other byte of the document stays as it was."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.archive import Archive
from archiver.decorate import decorate_html, decorate_with_archive
from archiver.demo.fixtureweb import Site
from archiver.jobs import WorkKind, run_due
from tests.conftest import discover_posts, post

WHEN = datetime(2008, 6, 14, 12, 30, 5)
ARCHIVE = "https://archive.example"
ARCHIVED = {
    "https://film.example/soviet-story": WHEN,
    "https://news.example/blog?id=1&page=2": datetime(2010, 1, 2, 3, 4, 5),
    "https://blog.example/2008/trailer.html": datetime(2011, 2, 3),
    "https://base.example/dir/page": datetime(2012, 3, 4),
}


class FakeLookup:
    """A lookup over ARCHIVED that records what it was asked."""

    def __init__(self, archived: dict[str, datetime] | None = None) -> None:
        self.archived = ARCHIVED if archived is None else archived
        self.calls: list[list[str]] = []

    def __call__(self, urls: list[str]) -> dict[str, tuple[str, datetime]]:
        self.calls.append(urls)
        return {url: (f"{ARCHIVE}/web/{self.archived[url]:%Y%m%d%H%M%S}/{url}",
                      self.archived[url]) for url in urls if url in self.archived}


def robust(url: str, when: datetime, original: str | None = None) -> str:
    return (f' data-originalurl="{original or url}"'
            f' data-versionurl="{ARCHIVE}/web/{when:%Y%m%d%H%M%S}/{url}"'
            f' data-versiondate="{when:%Y-%m-%d}"')


def test_only_archived_links_get_attributes_and_nothing_else_changes() -> None:
    html = ("<!DOCTYPE html>\n<html><head><title>A <a href=x> in a title</title></head>\n"
            "<body class=post>\n"
            "<!-- <a href=\"https://film.example/soviet-story\">commented out</a> -->\n"
            "<p>See <a class='ref'  href=\"https://film.example/soviet-story\">the film</a>,\n"
            "and <a href=\"https://alive.example/not-archived\">this</a>.</p>\n"
            "<script>var s = '<a href=\"https://film.example/soviet-story\">';</script>\n"
            "<a href=\"mailto:me@blog.example\">mail</a> <a href=\"#top\">top</a>\n"
            "</body></html>\n")
    lookup = FakeLookup()
    out = decorate_html(html, "https://blog.example/2008/post.html", lookup)
    film = "https://film.example/soviet-story"
    expected = html.replace(f'href="{film}">the film',
                            f'href="{film}"{robust(film, WHEN)}>the film')
    assert out == expected
    assert lookup.calls == [["https://alive.example/not-archived", film]]  # one call, sorted


def test_untouched_when_nothing_is_archived() -> None:
    html = "<p><a href='https://x.example/'>x</a> &amp; <A HREF=/rel>rel</A></p>"
    assert decorate_html(html, "https://blog.example/", FakeLookup({})) == html
    assert decorate_html("no links at all", "https://blog.example/", FakeLookup()) == \
        "no links at all"


def test_entities_and_quoting_are_kept() -> None:
    url = "https://news.example/blog?id=1&page=2"
    when = ARCHIVED[url]
    for href in ('"https://news.example/blog?id=1&amp;page=2"',
                 "'https://news.example/blog?id=1&page=2'",
                 "https://news.example/blog?id=1&amp;page=2",
                 '"https://NEWS.example:443/blog?id=1&#38;page=2#comments"'):
        html = f"<p>x <a href={href} title='&lt;news&gt;'>news &amp; views</a> y</p>"
        out = decorate_html(html, "https://blog.example/", FakeLookup())
        assert out.startswith(f"<p>x <a href={href} title='&lt;news&gt;' data-originalurl=")
        assert out.endswith(">news &amp; views</a> y</p>")
        stamp = f"{when:%Y%m%d%H%M%S}"
        assert (f'data-versionurl="{ARCHIVE}/web/{stamp}/https://news.example/blog'
                f'?id=1&amp;page=2"') in out
        assert f'data-versiondate="{when:%Y-%m-%d}"' in out
        original = re.search(r'data-originalurl="([^"]*)"', out)
        assert original is not None
        assert original.group(1).replace("&amp;", "").count("&") == 0  # escaped for HTML
        assert original.group(1).startswith(("https://news.example/blog?id=1&amp;page=2",
                                              "https://NEWS.example:443/blog?id=1&amp;page=2"))


def test_relative_hrefs_resolve_against_the_post_url() -> None:
    html = ('<a href="trailer.html">trailer</a> <a href="/2008/trailer.html">again</a> '
            '<a href="../2008/./trailer.html#t=5">third</a>')
    trailer = "https://blog.example/2008/trailer.html"
    when = ARCHIVED[trailer]
    out = decorate_html(html, "https://blog.example/2008/post.html", FakeLookup())
    assert out == (f'<a href="trailer.html"{robust(trailer, when)}>trailer</a> '
                   f'<a href="/2008/trailer.html"{robust(trailer, when)}>again</a> '
                   f'<a href="../2008/./trailer.html#t=5"'
                   f'{robust(trailer, when, "https://blog.example/2008/trailer.html#t=5")}'
                   f">third</a>")
    # Without the post's URL relative links cannot be resolved and are left alone.
    assert decorate_html(html, "", FakeLookup()) == html


def test_base_href_applies_to_the_whole_document() -> None:
    html = ('<a href="page">before base</a><base href="https://base.example/dir/">'
            '<base href="https://ignored.example/"><a href=page>after</a>')
    page = "https://base.example/dir/page"
    out = decorate_html(html, "https://blog.example/post", FakeLookup())
    assert out == (f'<a href="page"{robust(page, ARCHIVED[page])}>before base</a>'
                   '<base href="https://base.example/dir/"><base href="https://ignored.example/">'
                   f'<a href=page{robust(page, ARCHIVED[page])}>after</a>')


def test_existing_attributes_are_replaced_not_duplicated() -> None:
    film = "https://film.example/soviet-story"
    html = (f'<a data-versionurl="https://web.archive.org/web/2009/{film}" href="{film}" '
            f"DATA-VERSIONDATE=2009-01-01 data-versiondate='dup' >film</a>"
            f'<a href="{film}"/>')
    out = decorate_html(html, "", FakeLookup())
    assert out == (f'<a data-versionurl="{ARCHIVE}/web/20080614123005/{film}" href="{film}" '
                   f'DATA-VERSIONDATE="2008-06-14" data-originalurl="{film}" >film</a>'
                   f'<a href="{film}"{robust(film, WHEN)}/>')
    assert out.lower().count("data-versiondate") == 2


def test_a_dangling_equals_sign_does_not_swallow_the_new_attributes() -> None:
    film = "https://film.example/soviet-story"
    html = f"<a href={film} title=>film</a>"
    out = decorate_html(html, "", FakeLookup())
    assert out == f"<a href={film}{robust(film, WHEN)} title=>film</a>"
    assert decorate_html(out, "", FakeLookup()) == out


def test_decorating_twice_changes_nothing_more() -> None:
    html = ("<p><a href='https://film.example/soviet-story'>a</a>"
            "<a href=https://news.example/blog?id=1&page=2>b</a>"
            "<a href=\"trailer.html\" data-versiondate=\"1999-01-01\">c</a>"
            "<a href='https://alive.example/'>d</a></p>")
    once = decorate_html(html, "https://blog.example/2008/", FakeLookup())
    assert once != html
    assert decorate_html(once, "https://blog.example/2008/", FakeLookup()) == once


def _strip_robust(html: str) -> str:
    return re.sub(r' data-(?:originalurl|versionurl|versiondate)="[^"]*"', "", html)


class Everything(FakeLookup):
    """Every URL is archived."""

    def __call__(self, urls: list[str]) -> dict[str, tuple[str, datetime]]:
        return {url: (f"{ARCHIVE}/web/20080614123005/{url}", WHEN) for url in urls}


MARKUP = st.lists(st.sampled_from([
    "<a href=", "<A HREF='", "https://x.example/", "/rel", "'", '"', ">", "</a>", " ", "&amp;",
    "<!--", "-->", "<script>", "</script>", "<base href=https://b.example/>", "text", "=", "/",
    "\n", "<a", " data-versionurl=", "<p class=x>", "<textarea>", "</textarea>", "#", "?q=1",
]), max_size=30).map("".join)


@settings(max_examples=300, deadline=None)
@given(MARKUP)
def test_any_markup_is_preserved_and_idempotent(html: str) -> None:
    assert decorate_html(html, "https://blog.example/", FakeLookup({})) == html
    once = decorate_html(html, "https://blog.example/", Everything())
    assert decorate_html(once, "https://blog.example/", Everything()) == once
    if "data-" not in html:
        assert _strip_robust(once) == html


def test_decorate_with_the_archive_index(archive: Archive, site: Site, tmp_path: Path) -> None:
    site.page("/kept", "<p>kept</p>")
    site.page("/missing", "no", status=404)
    discover_posts(archive, tmp_path / "posts", post(
        "P", "https://blog.example/p",
        f"[kept]({site.url('/kept')}) [missing]({site.url('/missing')})", date=None))
    run_due(archive, WorkKind.CAPTURE)
    html = (f'<p><a href="{site.url("/kept")}">kept</a> '
            f'<a href="{site.url("/missing")}">missing</a> <a href="/local">local</a></p>')
    out = decorate_with_archive(archive, html, "https://blog.example/p", "https://arch.example/")
    match = re.search(r'data-versionurl="https://arch\.example/web/(\d{14})/([^"]+)"', out)
    assert match is not None and match.group(2) == site.url("/kept")
    assert re.search(r'data-versiondate="\d{4}-\d{2}-\d{2}"', out)
    assert out.count("data-versionurl") == 1  # the 404 capture is no archived copy
    assert _strip_robust(out) == html


def test_decorate_command_keeps_every_other_byte(archive: Archive, site: Site,
                                                 tmp_path: Path) -> None:
    from click.testing import CliRunner

    from archiver.cli import cli
    from archiver.jobs import capture_link
    from tests.test_capture import add_link

    site.page("/ref", "<p>ref</p>")
    capture_link(archive, add_link(archive, site.url("/ref")))
    post = tmp_path / "post.html"
    original = (f'<p>caf\xe9\r\n<a href="{site.url("/ref")}">the ref</a> and '
                '<a href="https://never.example/">not archived</a></p>\r\n').encode("latin-1")
    post.write_bytes(original)
    env = {"ARCHIVER_DATA_DIR": str(archive.settings.data_dir), "ARCHIVER_LOG_LEVEL": "WARNING"}
    result = CliRunner().invoke(cli, ["decorate", str(post), "--in-place",
                                      "--base", "https://archive.example"], env=env)
    assert result.exit_code == 0, result.output
    assert "decorate: 1 links marked" in result.stderr
    decorated = post.read_bytes()
    assert b'data-versionurl="https://archive.example/web/' in decorated
    assert decorated.count(b"data-versiondate=") == 1
    assert b"caf\xe9\r\n" in decorated and decorated.endswith(b"</p>\r\n")
    stripped = re.sub(rb' data-(?:originalurl|versionurl|versiondate)="[^"]*"', b"", decorated)
    assert stripped == original
    both = CliRunner().invoke(cli, ["decorate", str(post), "--in-place", "-o", "x"], env=env)
    assert both.exit_code == 2
    for wrong in ("not a url", "ftp://archive.example", "https://"):
        refused = CliRunner().invoke(cli, ["decorate", str(post), "--base", wrong], env=env)
        assert refused.exit_code == 2 and "not an http(s) origin" in refused.stderr, wrong
    assert post.read_bytes() == decorated
