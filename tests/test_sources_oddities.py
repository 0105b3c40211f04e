"""Oddities of real blogs' sources: tracking queries on post links, xml:base, paged feeds."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import select

from archiver.archive import Archive, initialise
from archiver.cli import cli
from archiver.demo.fixtureweb import Site
from archiver.discover import add_source, discover
from archiver.extract import extract_links
from archiver.models import Citation, Link, Post
from archiver.sources import PostData, detect_kind, read_posts
from archiver.sources.wxr import read_wxr
from tests.conftest import RawSite, make_settings
from tests.test_dashboard_review import kill
from tests.test_override import report


def _posts(archive: Archive) -> list[str]:
    """URLs of the posts stored, sorted."""
    with archive.db.session() as session:
        return sorted(session.scalars(select(Post.url)))


def _cited(archive: Archive) -> list[str]:
    """Every link some post cites, in citation order (duplicates kept)."""
    with archive.db.session() as session:
        return list(session.scalars(select(Link.url).join(Citation).order_by(Citation.id)))


def _citing(archive: Archive, url: str) -> list[str]:
    """URLs of the posts citing ``url``, sorted."""
    with archive.db.session() as session:
        return sorted(session.scalars(
            select(Post.url).join(Citation, Citation.post_id == Post.id)
            .join(Link, Link.id == Citation.link_id).where(Link.url == url)))


def _ci_gate(archive: Archive) -> int:
    """The exit status of ``archiver report`` (1: a cited link is dead)."""
    env = {"ARCHIVER_DATA_DIR": str(archive.settings.data_dir),
           "ARCHIVER_LOG_LEVEL": "WARNING"}
    return CliRunner().invoke(cli, ["-q", "report"], env=env).exit_code


PAGE = """<!doctype html><html><head><title>A</title></head>
<body><article><p>Cites <a href="https://cited.example.org/a">this</a>.</p></article></body></html>"""


def test_tracking_query_on_a_feed_link_does_not_store_the_post_twice(
        site: Site, archive: Archive) -> None:
    base = site.base_url
    # Feed services add utm_* to every item link; the sitemap lists the bare post URL.
    site.page("/feed.xml", f"""<?xml version="1.0"?><rss version="2.0"><channel>
<title>t</title><link>{base}/</link><description>d</description>
<item><title>A</title><link>{base}/posts/a?utm_source=rss&amp;utm_medium=feed&amp;id=7</link>
<description>&lt;a href="https://cited.example.org/a"&gt;this&lt;/a&gt;</description></item>
</channel></rss>""", content_type="application/rss+xml")
    site.page("/sitemap.xml", f"""<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
<url><loc>{base}/posts/a?id=7&amp;utm_campaign=x</loc></url></urlset>""",
              content_type="application/xml")
    site.page("/posts/a", PAGE)
    add_source(archive, site.url("/feed.xml"))
    add_source(archive, site.url("/sitemap.xml"))
    summary = discover(archive)
    assert not summary.errors
    with archive.db.session() as session:
        urls = list(session.scalars(select(Post.url)))
    assert urls == [site.url("/posts/a?id=7")]


def test_one_post_listed_by_its_feed_and_its_sitemap_is_one_post(site: Site,
                                                                 archive: Archive) -> None:
    """The feed and the sitemap both list /posts/a, which the server redirects to /posts/a/
    (as it does http:// to https:// on a blog moved to TLS while its settings still say
    http).  The sitemap's page is stored under the address it ended at, the feed's entry
    under the one listed: one post becomes two, every reference counted twice."""
    base = site.base_url
    site.page("/feed.xml", f"""<?xml version="1.0"?><rss version="2.0"><channel>
<title>t</title><link>{base}/</link><description>d</description>
<item><title>A</title><link>{base}/posts/a</link>
<description>&lt;a href="https://cited.example.org/a"&gt;this&lt;/a&gt;</description></item>
</channel></rss>""", content_type="application/rss+xml")
    site.page("/sitemap.xml", f"""<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
<url><loc>{base}/posts/a</loc></url></urlset>""", content_type="application/xml")
    site.redirect("/posts/a", "/posts/a/")
    site.page("/posts/a/", """<!doctype html><html><head><title>A</title></head><body>
<article><p>Cites <a href="https://cited.example.org/a">this</a>.</p></article></body></html>""")
    add_source(archive, site.url("/feed.xml"))
    add_source(archive, site.url("/sitemap.xml"))
    summary = discover(archive)
    assert not summary.errors
    assert len(_posts(archive)) == 1, _posts(archive)
    assert _citing(archive, "https://cited.example.org/a") == _posts(archive)


def test_a_sitemap_post_whose_address_starts_to_redirect_stays_one_post(
        site: Site, archive: Archive) -> None:
    """A sitemap lists /posts/b, read and stored as such; the blog then moves its posts to
    trailing-slash addresses (/posts/b redirects to /posts/b/): the post read again is the
    post stored, not a second one."""
    site.page("/sitemap.xml", f"""<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
<url><loc>{site.base_url}/posts/b</loc></url></urlset>""", content_type="application/xml")
    site.page("/posts/b", PAGE)
    add_source(archive, site.url("/sitemap.xml"))
    assert not discover(archive).errors
    assert _posts(archive) == [site.url("/posts/b")]
    site.redirect("/posts/b", "/posts/b/")
    site.page("/posts/b/", PAGE.replace("cited.example.org/a", "cited.example.org/b"))
    summary = discover(archive)
    assert (summary.errors, summary.posts_new, summary.posts_changed) == ([], 0, 1)
    assert _posts(archive) == [site.url("/posts/b")]
    assert _cited(archive) == ["https://cited.example.org/b"]


def test_a_summary_only_feed_still_gives_every_reference_of_the_post(site: Site,
                                                                     archive: Archive) -> None:
    """Hugo's default RSS template carries each post's summary (its first 70 words), and
    WordPress's "For each post in a feed, include: Summary" an excerpt: the references
    further down the post are not in the feed at all.  The post's page has them, read once
    for a new or changed entry."""
    base = site.base_url
    site.page("/index.xml", f"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"><channel><title>Hugo blog</title>
<link>{base}/</link><description>Recent content</description>
<item><title>On link rot</title><link>{base}/posts/link-rot/</link>
<pubDate>Mon, 01 Jan 2024 00:00:00 +0000</pubDate><guid>{base}/posts/link-rot/</guid>
<description>&lt;p&gt;Pew found that &lt;a href="https://pew.example.org/report"&gt;38% of
pages&lt;/a&gt; are gone.&lt;/p&gt;</description></item></channel></rss>""",
              content_type="application/rss+xml")
    site.page("/posts/link-rot/", """<!doctype html><html><head><title>On link rot</title>
</head><body><article><h1>On link rot</h1>
<p>Pew found that <a href="https://pew.example.org/report">38% of pages</a> are gone.</p>
<!--more-->
<p>Half the links in court opinions fail, says <a href="https://law.example.edu/zittrain">
Zittrain</a>; the fix is <a href="https://perma.example.cc/">a permanent copy</a>.</p>
</article></body></html>""")
    add_source(archive, site.url("/index.xml"))
    summary = discover(archive)
    assert not summary.errors
    assert _posts(archive) == [site.url("/posts/link-rot/")]
    assert sorted(_cited(archive)) == ["https://law.example.edu/zittrain",
                                       "https://perma.example.cc/",
                                       "https://pew.example.org/report"]
    assert site.hits["/posts/link-rot/"] == 1
    assert discover(archive).posts_changed == 0  # the entry unchanged: its page not asked
    assert site.hits["/posts/link-rot/"] == 1


def _summary_feed(base: str, description: str, link: str | None = None) -> str:
    """An RSS feed of one summary-only entry (Hugo's default template)."""
    return f"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Hugo blog</title>
<link>{base}/</link><description>Recent content</description>
<item><title>On link rot</title><link>{link or base + '/posts/link-rot/'}</link>
<pubDate>Mon, 01 Jan 2024 00:00:00 +0000</pubDate>
<description>{description}</description></item></channel></rss>"""


SUMMARY = ("&lt;p&gt;Pew found that &lt;a href=\"https://pew.example.org/report\"&gt;38% of "
           "pages&lt;/a&gt; are gone.&lt;/p&gt;")
WHOLE_POST = """<!doctype html><html><head><title>On link rot</title></head><body><article>
<h1>On link rot</h1>
<p>Pew found that <a href="https://pew.example.org/report">38% of pages</a> are gone.</p>
<p>Half the links in court opinions fail, says <a href="https://law.example.edu/zittrain">
Zittrain</a>; the fix is <a href="https://perma.example.cc/">a permanent copy</a>.</p>
</article></body></html>"""
ALL_THREE = ["https://law.example.edu/zittrain", "https://perma.example.cc/",
             "https://pew.example.org/report"]


def test_a_summary_entry_whose_page_failed_once_is_read_whole_later(site: Site,
                                                                   archive: Archive) -> None:
    """The post's page answers 503 during the first discovery (a deploy, a busy host): the
    summary's references are stored for now, and the page is asked for again at the next
    run, so the references further down the post are found once the site is back."""
    site.page("/index.xml", _summary_feed(site.base_url, SUMMARY),
              content_type="application/rss+xml")
    site.page("/posts/link-rot/", "<h1>Service Unavailable</h1>", status=503)
    add_source(archive, site.url("/index.xml"))
    discover(archive)
    assert _cited(archive) == ["https://pew.example.org/report"]
    site.page("/posts/link-rot/", WHOLE_POST)  # the site is back
    discover(archive)
    discover(archive)
    assert sorted(_cited(archive)) == ALL_THREE, (
        f"the page was never read again ({site.hits.get('/posts/link-rot/')} requests)")
    assert site.hits["/posts/link-rot/"] == 2  # once failed, once read: then left alone


def test_a_changed_summary_entry_whose_page_fails_keeps_the_posts_citations(
        site: Site, archive: Archive) -> None:
    """A summary-only entry read whole (three references); the author fixes a typo in the
    summary, and at that run the page answers 503.  The post keeps its three citations, so
    its dead reference still fails ``archiver report``'s CI gate (as a page cut short
    changes nothing, see test_a_post_page_cut_short_keeps_the_links_it_cites)."""
    site.page("/index.xml", _summary_feed(site.base_url, SUMMARY),
              content_type="application/rss+xml")
    site.page("/posts/link-rot/", WHOLE_POST)
    add_source(archive, site.url("/index.xml"))
    discover(archive)
    assert sorted(_cited(archive)) == ALL_THREE
    kill(archive, "https://law.example.edu/zittrain")
    site.page("/index.xml", _summary_feed(site.base_url, SUMMARY.replace("gone", "gone!")),
              content_type="application/rss+xml")
    site.page("/posts/link-rot/", "<h1>Service Unavailable</h1>", status=503)
    discover(archive)
    assert sorted(_cited(archive)) == ALL_THREE
    assert report(archive)[1]["https://law.example.edu/zittrain"]["cited"] is True
    assert _ci_gate(archive) == 1


def test_a_summary_entry_linking_to_another_site_does_not_read_that_site(
        site: Site, archive: Archive) -> None:
    """A links feed (bookmarks, a link blog without permalinks on the blog): each entry's
    <link> is the article on another site, its description the blogger's note.  That article
    is not the post's page: its links (its ads, its own sources) are not the blogger's
    references, and it is not fetched."""
    other = Site("other").start()
    try:
        other.page("/article", """<html><head><title>Their article</title></head><body>
<article><p>Sponsored by <a href="https://ads.example.net/buy">a shop</a> and citing
<a href="https://their-source.example.org/x">their source</a>.</p></article></body></html>""")
        note = "Worth reading, via &lt;a href=\"https://via.example.org/\"&gt;via&lt;/a&gt;."
        site.page("/links.xml", _summary_feed(site.base_url, note, link=other.url("/article")),
                  content_type="application/rss+xml")
        add_source(archive, site.url("/links.xml"))
        assert not discover(archive).errors
        assert _cited(archive) == ["https://via.example.org/"]
        assert other.hits.get("/article", 0) == 0, "another site's article was fetched"
    finally:
        other.stop()


def test_a_full_text_rss_description_is_not_taken_for_a_summary(site: Site,
                                                                archive: Archive) -> None:
    """RSS 2.0 has no content element: Blogger, most static generators and hand-written feeds
    put the whole post in <description> (feedparser's ``summary``).  Such an entry is the
    post: its page is not read, so the share bar every theme puts inside <article> is not
    taken for the post's references."""
    whole = WHOLE_POST.split("<article>", 1)[1].split("</article>", 1)[0]
    site.page("/rss.xml", _summary_feed(
        site.base_url, whole.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")),
        content_type="application/rss+xml")
    site.page("/posts/link-rot/", WHOLE_POST.replace("</article>", (
        '<div class="sharedaddy"><a href="https://twitter.com/intent/tweet?url=x">Tweet</a>'
        '<a href="https://www.facebook.com/sharer/sharer.php?u=x">Share</a></div></article>')))
    add_source(archive, site.url("/rss.xml"))
    assert not discover(archive).errors
    assert sorted(_cited(archive)) == ALL_THREE
    assert site.hits.get("/posts/link-rot/", 0) == 0


@pytest.mark.parametrize("description", [
    "&lt;p&gt;" + "A long first paragraph that goes on. " * 12 + "Pew found that&#8230;&lt;/p&gt;",
    "&lt;p&gt;Pew found that [&amp;#8230;]&lt;/p&gt;",
    "&lt;p&gt;Pew found.&lt;/p&gt;&lt;p&gt;Half the links fail. &lt;a href=\"/posts/link-rot/"
    "\"&gt;Continue reading &amp;#8220;On link rot&amp;#8221;&lt;/a&gt;&lt;/p&gt;",
])
def test_an_rss_description_cut_short_is_a_summary(site: Site, archive: Archive,
                                                    description: str) -> None:
    """An RSS description that ends in an ellipsis, WordPress's "[…]" or a "Continue
    reading" link is a summary, however long: the post's page is read."""
    site.page("/rss.xml", _summary_feed(site.base_url, description),
              content_type="application/rss+xml")
    site.page("/posts/link-rot/", WHOLE_POST)
    add_source(archive, site.url("/rss.xml"))
    assert not discover(archive).errors
    assert set(ALL_THREE) <= set(_cited(archive))


def test_atom_xml_base_is_the_base_of_relative_links_in_content(site: Site, archive: Archive,
                                                                 ) -> None:
    base = site.base_url
    site.page("/atom.xml", f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:base="{base}/blog/">
<title>t</title><id>urn:x</id><updated>2024-01-01T00:00:00Z</updated>
<entry xml:base="2024/"><title>e</title><id>urn:y</id><link href="post-one"/>
<updated>2024-01-01T00:00:00Z</updated>
<content type="html" xml:base="https://mirror.example.com/docs/">&lt;a href="guide/x"&gt;x&lt;/a&gt;
&lt;a href="https://cited.example.org/b"&gt;b&lt;/a&gt;</content></entry>
<entry><title>f</title><id>urn:z</id><link href="2024/post-two"/>
<updated>2024-01-01T00:00:00Z</updated>
<content type="html">&lt;a href="../files/f.pdf"&gt;f&lt;/a&gt;</content></entry></feed>""",
              content_type="application/atom+xml")
    client = archive.client()
    location = site.url("/atom.xml")
    one, two = list(read_posts(detect_kind(location, client), location, client))
    assert one.url == site.url("/blog/2024/post-one")
    assert [link.url for link in extract_links(one.html, one.url)] == [
        "https://mirror.example.com/docs/guide/x", "https://cited.example.org/b"]
    # The feed's xml:base (…/blog/) is the base, not the post's URL (…/blog/2024/post-two):
    # the link is to the blog's own /files/, not an outbound one, and not to /blog/files/.
    assert two.url == site.url("/blog/2024/post-two")
    assert '<base href="' + site.url("/blog/") + '">' in two.html
    assert extract_links(two.html, two.url) == []


WXR = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"
 xmlns:wp="http://wordpress.org/export/1.2/"><channel><title>b</title>
<link>https://blog.example.com</link>{items}</channel></rss>"""
WXR_ITEM = """<item><title>{title}</title><link>https://blog.example.com/{title}/</link>
<content:encoded><![CDATA[{body}]]></content:encoded><wp:post_type>post</wp:post_type>
<wp:status>publish</wp:status><wp:post_password><![CDATA[{password}]]></wp:post_password>
</item>"""


def _wxr(tmp_path: Path, *items: tuple[str, str, str]) -> list[PostData]:
    path = tmp_path / "export.xml"
    path.write_text(WXR.format(items="".join(
        WXR_ITEM.format(title=title, body=body, password=password)
        for title, body, password in items)), encoding="utf-8")
    return list(read_wxr(path))


def test_wxr_password_protected_post_is_not_imported(tmp_path: Path) -> None:
    posts = _wxr(tmp_path, ("open", '<a href="https://ext.example.org/">e</a>', ""),
                 ("locked", '<a href="https://secret.example.org/">s</a>', "hunter2"))
    assert [post.title for post in posts] == ["open"]


def test_wxr_embeds_written_as_bare_urls_are_references(tmp_path: Path) -> None:
    # WordPress stores a post's source: an embed is a URL alone on its line (classic editor),
    # inside a block's wrapper (block editor) or in an [embed] shortcode.
    body = """Intro with <a href="https://linked.example.org/">a link</a>.

https://www.youtube.com/watch?v=abc

<!-- wp:embed {"url":"https://vimeo.com/123"} -->
<figure class="wp-block-embed"><div class="wp-block-embed__wrapper">
https://vimeo.com/123
</div></figure>
<!-- /wp:embed -->
<p>https://twitter.com/someone/status/1</p>
[embed width="500"]https://soundcloud.com/a/b[/embed]
Not an embed, but WordPress shows it as a link: see https://inline.example.org/x in a sentence.
<pre>
https://code.example.org/in-pre
</pre>"""
    (post,) = _wxr(tmp_path, ("embeds", body, ""))
    assert [link.url for link in extract_links(post.html, post.url)] == [
        "https://linked.example.org/", "https://www.youtube.com/watch?v=abc",
        "https://vimeo.com/123", "https://twitter.com/someone/status/1",
        "https://soundcloud.com/a/b", "https://inline.example.org/x"]


def _atom_page(base: str, number: int, next_path: str | None, rel: str = "next") -> str:
    following = f'<link rel="{rel}" href="{next_path}"/>' if next_path else ""
    return f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><id>urn:f</id>
<updated>2024-01-01T00:00:00Z</updated><link rel="self" href="{base}/feed?page={number}"/>
{following}<entry><title>p{number}</title><id>urn:p{number}</id>
<link href="{base}/posts/{number}"/><updated>2024-01-01T00:00:00Z</updated>
<content type="html">x</content></entry></feed>"""


def test_paged_and_archived_feeds_are_followed_and_bounded(site: Site,
                                                            archive: Archive) -> None:
    from archiver.sources import feed

    base = site.base_url
    # RFC 5005 paging: each page names the next; the last page links back to the first.
    site.page("/feed", _atom_page(base, 1, "/feed2"), content_type="application/atom+xml")
    site.page("/feed2", _atom_page(base, 2, "/feed3", rel="prev-archive"),
              content_type="application/atom+xml")  # an archived feed's older archive
    site.page("/feed3", _atom_page(base, 3, "/feed"), content_type="application/atom+xml")
    client = archive.client()
    posts = list(read_posts(detect_kind(site.url("/feed"), client), site.url("/feed"), client))
    assert [post.title for post in posts] == ["p1", "p2", "p3"]
    for number in range(4, 4 + feed.MAX_FEED_PAGES):
        site.page(f"/feed{number - 1}", _atom_page(base, number - 1, f"/feed{number}"),
                  content_type="application/atom+xml")
    posts = list(read_posts(detect_kind(site.url("/feed"), client), site.url("/feed"), client))
    assert len(posts) == feed.MAX_FEED_PAGES


def test_a_post_listed_twice_is_stored_once_and_stays_unchanged(site: Site,
                                                                archive: Archive) -> None:
    base = site.base_url
    # Two entries for one post (a duplicated GUID and link), and the same post in a sitemap:
    # each run used to store every copy in turn, so the post flip-flopped and was "changed".
    site.page("/feed.xml", f"""<?xml version="1.0"?><rss version="2.0"><channel>
<title>t</title><link>{base}/</link><description>d</description>
<item><title>New</title><link>{base}/posts/a</link><guid>g1</guid>
<description>&lt;a href="https://new.example.org/"&gt;n&lt;/a&gt;</description></item>
<item><title>Old</title><link>{base}/posts/a</link><guid>g1</guid>
<description>&lt;a href="https://old.example.org/"&gt;o&lt;/a&gt;</description></item>
</channel></rss>""", content_type="application/rss+xml")
    site.page("/sitemap.xml", f"""<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
<url><loc>{base}/posts/a</loc></url></urlset>""", content_type="application/xml")
    site.page("/posts/a", PAGE)
    add_source(archive, site.url("/feed.xml"))
    add_source(archive, site.url("/sitemap.xml"))
    first = discover(archive)
    assert (first.posts_new, first.posts_changed) == (1, 0)
    again = discover(archive)
    assert (again.posts_new, again.posts_changed) == (0, 0)
    with archive.db.session() as session:
        (post,) = session.scalars(select(Post))
        assert post.title == "New"
        # A summary-only entry: its page's references, then its summary's.
        assert [citation.link.url for citation in post.citations] == [
            "https://cited.example.org/a", "https://new.example.org/"]


def test_utf8_page_served_as_latin1_keeps_its_links(site: Site, archive: Archive) -> None:
    # An old server default (AddDefaultCharset ISO-8859-1) in front of a UTF-8 blog: bytes that
    # are valid UTF-8 are UTF-8, else every IDN or accented link points somewhere else.
    page = ('<html><head><meta charset="utf-8"><title>Café</title></head><body><article>'
            '<a href="https://bücher.example/ä">b</a></article></body></html>')
    site.page("/post", page.encode("utf-8"), content_type="text/html; charset=ISO-8859-1")
    latin = page.replace('charset="utf-8"', 'charset="iso-8859-1"').encode("latin-1")
    site.page("/latin", latin, content_type="text/html; charset=ISO-8859-1")
    client = archive.client()
    (post,) = read_posts(detect_kind(site.url("/post"), client), site.url("/post"), client)
    assert post.title == "Café"
    assert [link.url for link in extract_links(post.html, post.url)] == [
        "https://xn--bcher-kva.example/%C3%A4"]
    (real,) = read_posts(detect_kind(site.url("/latin"), client), site.url("/latin"), client)
    assert real.title == "Café"  # a page that really is Latin-1 is still read as Latin-1


def test_html_post_in_a_declared_legacy_charset_keeps_its_links(tmp_path: Path,
                                                               archive: Archive) -> None:
    """An old static blog saved as ISO-8859-1, as its <meta charset> says: the link to
    'Köln' is the page a browser opens, not one with U+FFFD in its path."""
    posts = tmp_path / "posts"
    posts.mkdir()
    page = ('<html><head><meta charset="iso-8859-1"><title>Köln</title></head><body>'
            '<article><p>Über <a href="https://de.wikipedia.org/wiki/Köln">Köln</a>.</p>'
            '</article></body></html>')
    (posts / "koeln.html").write_bytes(page.encode("latin-1"))
    # A Markdown post is UTF-8 whatever the <meta> it shows as an example says.
    (posts / "howto.md").write_text(
        "---\ntitle: Zürich\n---\n    <meta charset=\"iso-8859-1\">\n\n"
        "[Zürich](https://de.wikipedia.org/wiki/Zürich)\n", encoding="utf-8")
    add_source(archive, str(posts))
    discover(archive)
    assert sorted(_cited(archive)) == ["https://de.wikipedia.org/wiki/K%C3%B6ln",
                                       "https://de.wikipedia.org/wiki/Z%C3%BCrich"]
    with archive.db.session() as session:
        assert sorted(session.scalars(select(Post.title))) == ["Köln", "Zürich"]


def test_feedburner_item_is_its_original_post_not_the_proxy(site: Site,
                                                            archive: Archive) -> None:
    base = site.base_url
    # FeedBurner rewrites item links to its redirector and keeps the post's own in origLink;
    # the redirector URL would make the post a second one and the blog's own links outbound.
    site.page("/fb.xml", f"""<?xml version="1.0"?>
<rss version="2.0" xmlns:feedburner="http://rssnamespace.org/feedburner/ext/1.0"><channel>
<title>t</title><link>{base}/</link><description>d</description>
<item><title>A</title><link>http://feedproxy.google.com/~r/Blog/~3/abc/</link>
<feedburner:origLink>{base}/posts/a</feedburner:origLink>
<description>&lt;a href="{base}/posts/older"&gt;older&lt;/a&gt;
&lt;a href="https://cited.example.org/a"&gt;c&lt;/a&gt;</description></item>
</channel></rss>""", content_type="application/rss+xml")
    client = archive.client()
    (post,) = read_posts(detect_kind(site.url("/fb.xml"), client), site.url("/fb.xml"), client)
    assert post.url == site.url("/posts/a")
    assert [link.url for link in extract_links(post.html, post.url)] == [
        "https://cited.example.org/a"]


def test_share_buttons_and_script_schemes_are_not_references() -> None:
    # A blog's share bar is app links on every post; they are no link to keep or to review.
    html = """<p><a href="whatsapp://send?text=hi">WhatsApp</a>
<a href="fb-messenger://share?link=x">Messenger</a> <a href="skype:echo123?call">Skype</a>
<a href="viber://forward?text=x">Viber</a> <a href="VBScript:MsgBox(1)">vb</a>
<a href="intent://scan/#Intent;scheme=zxing;end">app</a> <a href="sip:a@example.org">sip</a>
<a href="ftp://ftp.example.org/file.txt">a file</a></p>"""
    found = [(link.href, link.verdict)
             for link in extract_links(html, "https://blog.example.com/post")]
    assert found == [("ftp://ftp.example.org/file.txt", "unsupported_scheme")]


def test_lazy_loaded_embeds_are_references() -> None:
    # Lazy-load plugins keep the real address in data-src / data-lazy-src and put a
    # placeholder (or nothing) in src until the embed scrolls into view.
    html = """<p>Watch <iframe data-src="https://www.youtube.com/embed/abc" src="about:blank">
</iframe> <iframe data-lazy-src="https://player.vimeo.com/video/1"
 src="data:image/gif;base64,R0lGODlhAQABAAAAACw="></iframe>
<iframe data-src="https://open.spotify.com/embed/x"></iframe>
<video data-src="https://media.example.org/clip.mp4"></video>
<iframe src="https://kept.example.org/e" data-src="https://lazy.example.org/e"></iframe></p>"""
    found = [(link.url, link.element)
             for link in extract_links(html, "https://blog.example.com/post")]
    assert found == [("https://www.youtube.com/embed/abc", "iframe"),
                     ("https://player.vimeo.com/video/1", "iframe"),
                     ("https://open.spotify.com/embed/x", "iframe"),
                     ("https://media.example.org/clip.mp4", "video"),
                     ("https://kept.example.org/e", "iframe")]


def test_hugo_toml_front_matter_is_read(tmp_path: Path, archive: Archive) -> None:
    # Hugo's default front matter is TOML between +++ lines.
    (tmp_path / "post.md").write_text(
        '+++\ntitle = "Hugo post"\ndate = 2024-01-03T10:00:00+01:00\n'
        'url = "https://blog.example.com/hugo-post/"\n+++\n'
        "See [mine](https://blog.example.com/other/) and [theirs](https://ext.example.org/y).\n",
        encoding="utf-8")
    client = archive.client()
    (post,) = read_posts(detect_kind(str(tmp_path), client), str(tmp_path), client)
    assert (post.url, post.title) == ("https://blog.example.com/hugo-post/", "Hugo post")
    assert post.published_at == datetime(2024, 1, 3, 9, 0)
    assert "+++" not in post.html
    assert [link.url for link in extract_links(post.html, post.url)] == [
        "https://ext.example.org/y"]


def test_draft_posts_in_a_folder_are_not_archived(tmp_path: Path, archive: Archive) -> None:
    """Hugo's `draft: true`, Jekyll's `published: false` and its _drafts/ folder mark posts
    that are not public; like a WordPress export's drafts they are no post of the blog: their
    links are not archived and their titles are not shown on the archive's public pages."""
    posts = tmp_path / "posts"
    (posts / "_drafts").mkdir(parents=True)
    (posts / "live.md").write_text(
        "---\ntitle: Published\nurl: https://myblog.example/live/\npublished: true\n---\n"
        "[public](https://public.example.org/a)\n", encoding="utf-8")
    (posts / "hugo-draft.md").write_text(
        "---\ntitle: Unannounced product\ndraft: true\nurl: https://myblog.example/secret/\n"
        "---\n[embargoed](https://embargoed.example.org/launch)\n", encoding="utf-8")
    (posts / "hugo-toml-draft.md").write_text(
        '+++\ntitle = "TOML draft"\ndraft = true\n+++\n[t](https://toml.example.org/)\n',
        encoding="utf-8")
    (posts / "jekyll-draft.md").write_text(
        "---\ntitle: Half written\npublished: false\n---\n"
        "[unfinished](https://unfinished.example.org/)\n", encoding="utf-8")
    (posts / "_drafts" / "idea.md").write_text(
        "---\ntitle: An idea\n---\n[idea](https://idea.example.org/)\n", encoding="utf-8")
    add_source(archive, str(posts))
    discover(archive)
    assert _posts(archive) == ["https://myblog.example/live/"]
    assert _cited(archive) == ["https://public.example.org/a"]


def test_draft_flags_written_in_other_ways(tmp_path: Path, archive: Archive) -> None:
    """Quoted words, YAML 1.1 words and the flags' opposites: only the real drafts drop."""
    folder = tmp_path / "posts"
    folder.mkdir()
    flags = {"a": 'draft: "true"', "b": "draft: 'yes'", "c": "draft: no", "d": "draft: false",
             "e": 'published: "false"', "f": "published: 2024-01-01", "g": 'draft: "false"',
             "h": "published: true", "i": "draft: on", "j": "published: off"}
    for name, flag in flags.items():
        (folder / f"{name}.md").write_text(
            f"---\ntitle: {name}\nurl: https://blog.example/{name}/\n{flag}\n---\n"
            f"[r](https://ref.example.org/{name})\n", encoding="utf-8")
    add_source(archive, str(folder))
    discover(archive)
    assert _posts(archive) == [f"https://blog.example/{name}/" for name in "cdfgh"]


def test_a_post_turned_back_into_a_draft_is_no_longer_the_blogs(archive: Archive,
                                                                client: FlaskClient,
                                                                tmp_path: Path) -> None:
    """A post published, then unpublished (``draft: true`` put back: an embargo, a legal
    request) is removed like any draft: its title leaves /posts and its links are cited by no
    post, so its dead link no longer fails the author's CI gate.  Published again, it is a
    new post."""
    folder = tmp_path / "posts"
    folder.mkdir()
    page = "---\ntitle: Embargoed launch\nurl: https://blog.example/launch/\n{extra}---\n" \
           "[the product](https://product.example.org/launch)\n"
    (folder / "launch.md").write_text(page.format(extra=""), encoding="utf-8")
    add_source(archive, str(folder))
    discover(archive)
    assert _cited(archive) == ["https://product.example.org/launch"]
    kill(archive, "https://product.example.org/launch")
    assert "Embargoed launch" in client.get("/posts").get_data(as_text=True)
    (folder / "launch.md").write_text(page.format(extra="draft: true\n"), encoding="utf-8")
    assert discover(archive).posts_unpublished == 1
    assert (_posts(archive), _cited(archive)) == ([], [])
    assert "Embargoed launch" not in client.get("/posts").get_data(as_text=True)
    assert report(archive)[1]["https://product.example.org/launch"]["cited"] is False
    assert _ci_gate(archive) == 0
    (folder / "launch.md").write_text(page.format(extra=""), encoding="utf-8")
    assert discover(archive).posts_new == 1
    assert _cited(archive) == ["https://product.example.org/launch"]


def test_link_blog_entry_is_the_blog_post_and_cites_the_linked_article(
        site: Site, archive: Archive) -> None:
    base = site.base_url
    # A "linked list" entry: <link> is the article commented on, the post's own address is a
    # rel="related" link (Atom) or a permalink GUID (RSS).
    site.page("/atom.xml", f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><id>urn:f</id>
<link rel="alternate" type="text/html" href="{base}/"/><updated>2024-01-01T00:00:00Z</updated>
<entry><title>Linked</title><id>tag:blog,2024:/linked/1</id>
<link rel="alternate" type="text/html" href="https://ext.example.org/article"/>
<link rel="related" type="text/html" href="{base}/linked/1"/>
<updated>2024-01-01T00:00:00Z</updated>
<content type="html">Good &lt;a href="/linked/0"&gt;again&lt;/a&gt;.</content></entry></feed>""",
              content_type="application/atom+xml")
    site.page("/rss.xml", f"""<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
<link>{base}/</link><description>d</description><item><title>Linked 2</title>
<link>https://ext.example.org/other</link><guid isPermaLink="true">{base}/linked/2</guid>
<description>Read it.</description></item></channel></rss>""",
              content_type="application/rss+xml")
    client = archive.client()
    for path, post_path, article in (("/atom.xml", "/linked/1", "https://ext.example.org/article"),
                                     ("/rss.xml", "/linked/2", "https://ext.example.org/other")):
        (post,) = read_posts(detect_kind(site.url(path), client), site.url(path), client)
        assert post.url == site.url(post_path)
        assert [link.url for link in extract_links(post.html, post.url)] == [article]


def test_wxr_embed_search_stays_linear_on_long_blank_runs() -> None:
    from archiver.sources.wxr import link_embeds

    # A post pasted with thousands of empty lines: the own-line pattern once took minutes.
    started = time.monotonic()
    assert link_embeds(" \n" * 50_000 + "https://x.example.org/").endswith(
        '<a href="https://x.example.org/">https://x.example.org/</a>')
    assert time.monotonic() - started < 2


# -- a WordPress blog as it is served ----------------------------------------------------


def _wp_page(title: str, body: str, body_class: str) -> str:
    return (f'<!doctype html><html><head><title>{title} &#8211; Field Notes</title></head>'
            f'<body class="{body_class}"><header><a href="/">Field Notes</a></header>'
            f'<main id="main">{body}</main><footer>Powered by WordPress</footer></body></html>')


def _wp_excerpt(base: str, slug: str, title: str, cited: str) -> str:
    return (f'<article class="post type-post"><h2><a href="{base}/{slug}/">{title}</a></h2>'
            f'<p>It cites <a href="{cited}">a source</a>. <a href="{base}/{slug}/">Continue'
            f' reading</a></p></article>')


def _wordpress(site: Site) -> None:
    """A WordPress blog with two posts, an About page, a category, a tag and an author: its
    feed, its core sitemap (wp-sitemap.xml: posts, pages, taxonomies, users) and its pages."""
    base = site.base_url
    one = _wp_excerpt(base, "soviet-story", "The Soviet Story", "https://film.example.org/")
    two = _wp_excerpt(base, "link-rot", "Link rot", "https://study.example.org/rot")
    site.page("/soviet-story/", _wp_page("The Soviet Story", (
        '<article class="post"><h1>The Soviet Story</h1><p>See '
        '<a href="https://film.example.org/">the film</a>.</p></article>'),
        "post-template-default single single-post"))
    site.page("/link-rot/", _wp_page("Link rot", (
        '<article class="post"><h1>Link rot</h1><p>A <a href="https://study.example.org/rot">'
        'study</a>.</p></article>'), "post-template-default single single-post"))
    site.page("/about/", _wp_page("About", (
        '<article class="page"><h1>About</h1><p>Mail me.</p></article>'),
        "page-template-default page"))
    site.page("/category/film/", _wp_page("Film", one, "archive category category-film"))
    site.page("/tag/history/", _wp_page("history", one + two, "archive tag tag-history"))
    site.page("/author/admin/", _wp_page("admin", two + one, "archive author author-admin"))
    site.page("/", _wp_page("Field Notes", two + one, "home blog").replace(
        "</head>", f'<link rel="alternate" type="application/rss+xml" title="Field Notes '
                   f'&raquo; Feed" href="{base}/feed/"></head>'))
    sitemap = ('<?xml version="1.0" encoding="UTF-8"?>'
               '<{root} xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{items}</{root}>')

    def urlset(*paths: str) -> str:
        return sitemap.format(root="urlset", items="".join(
            f"<url><loc>{base}{path}</loc></url>" for path in paths))

    site.page("/wp-sitemap.xml", sitemap.format(root="sitemapindex", items="".join(
        f"<sitemap><loc>{base}/wp-sitemap-{name}-1.xml</loc></sitemap>"
        for name in ("posts-post", "posts-page", "taxonomies-category", "taxonomies-post_tag",
                     "users"))), content_type="application/xml")
    site.page("/wp-sitemap-posts-post-1.xml", urlset("/soviet-story/", "/link-rot/"),
              content_type="application/xml")
    site.page("/wp-sitemap-posts-page-1.xml", urlset("/about/"), content_type="application/xml")
    site.page("/wp-sitemap-taxonomies-category-1.xml", urlset("/category/film/"),
              content_type="application/xml")
    site.page("/wp-sitemap-taxonomies-post_tag-1.xml", urlset("/tag/history/"),
              content_type="application/xml")
    site.page("/wp-sitemap-users-1.xml", urlset("/author/admin/"),
              content_type="application/xml")
    item = ('<item><title>{title}</title><link>{base}/{slug}/</link>'
            '<description><![CDATA[<p>It cites <a href="{cited}">a source</a>.</p>]]>'
            '</description></item>')
    site.page("/feed/", '<?xml version="1.0"?><rss version="2.0"><channel><title>Field Notes'
              f'</title><link>{base}</link><description>d</description>'
              + item.format(title="Link rot", base=base, slug="link-rot",
                            cited="https://study.example.org/rot")
              + item.format(title="The Soviet Story", base=base, slug="soviet-story",
                            cited="https://film.example.org/")
              + "</channel></rss>", content_type="application/rss+xml; charset=UTF-8")


def test_wordpress_sitemap_archives_are_not_posts(site: Site, archive: Archive) -> None:
    """WordPress's own sitemap index lists its category, tag and author archives beside the
    posts and pages.  An archive page is a list of post excerpts, not a post: read as one,
    the blog has seven "posts" and the film is cited by four of them."""
    _wordpress(site)
    add_source(archive, site.url("/wp-sitemap.xml"))
    summary = discover(archive)
    assert not summary.errors
    assert _posts(archive) == [site.url("/about/"), site.url("/link-rot/"),
                               site.url("/soviet-story/")]
    assert _citing(archive, "https://film.example.org/") == [site.url("/soviet-story/")]


def test_sitemaps_whose_names_merely_contain_tag_or_author_are_read(site: Site,
                                                                    archive: Archive) -> None:
    """A sitemap whose name merely contains "tag", "author" or "vintage" is read; the
    archives' own (Yoast's post_tag- and category-sitemaps in any case, WordPress's users)
    are passed over."""
    base = site.base_url
    names = ("post-sitemap-tagged.xml", "authorship-sitemap.xml", "vintage-sitemap.xml",
             "post_tag-sitemap.xml", "wp-sitemap-users-1.xml", "Category-Sitemap2.xml")
    site.page("/sitemap_index.xml", '<sitemapindex xmlns="http://www.sitemaps.org/schemas/'
              'sitemap/0.9">' + "".join(f"<sitemap><loc>{base}/{name}</loc></sitemap>"
                                        for name in names) + "</sitemapindex>",
              content_type="application/xml")
    for number, name in enumerate(names):
        site.page(f"/{name}", '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                  f"<url><loc>{base}/p{number}/</loc></url></urlset>",
                  content_type="application/xml")
        site.page(f"/p{number}/", f"<html><body><article><a href=\"https://r.example.org/"
                  f"{number}\">r</a></article></body></html>")
    add_source(archive, site.url("/sitemap_index.xml"))
    assert not discover(archive).errors
    assert _posts(archive) == [site.url(f"/p{number}/") for number in range(3)]


def test_adding_the_blog_address_reads_the_blogs_posts(site: Site, archive: Archive) -> None:
    """The address a blogger knows is the blog's own: https://myblog.example/.  Its home page
    names its feed (<link rel="alternate" type="application/rss+xml">), as every blog engine
    writes it.  Added, it was one "post" (the home page, titled with the blog's name) citing
    the excerpts' links; the blog's posts were not read at all."""
    _wordpress(site)
    source, _new = add_source(archive, site.url("/"))
    summary = discover(archive)
    assert not summary.errors
    assert site.url("/") not in _posts(archive), f"the home page is a post ({source.kind})"
    assert _posts(archive) == [site.url("/link-rot/"), site.url("/soviet-story/")]


def test_a_post_page_naming_the_blogs_feed_is_still_one_post(site: Site,
                                                            archive: Archive) -> None:
    """Every page of a WordPress blog names the blog's feed in its <head>: a post's address,
    added, is that post, not the whole blog."""
    _wordpress(site)
    feed_link = (f'<link rel="alternate" type="application/rss+xml" '
                 f'href="{site.base_url}/feed/"></head>')
    site.page("/link-rot/", _wp_page("Link rot", (
        '<article class="post"><h1>Link rot</h1><p>A <a href="https://study.example.org/rot">'
        'study</a>.</p></article>'), "single single-post").replace("</head>", feed_link))
    source, _new = add_source(archive, site.url("/link-rot/"))
    assert (source.kind, source.location) == ("page", site.url("/link-rot/"))
    assert not discover(archive).errors
    assert _posts(archive) == [site.url("/link-rot/")]


COMMENTS_FEED = """<?xml version="1.0"?><rss version="2.0"><channel>
<title>Comments on: Link rot</title><link>{base}/link-rot/</link><description>c</description>
<item><title>By: Troll</title><link>{base}/link-rot/#comment-7</link>
<description>Buy &lt;a href="https://spam.example.net/pills"&gt;pills&lt;/a&gt;</description>
</item></channel></rss>"""


def _head_links(*feeds: tuple[str, str]) -> str:
    """<link rel="alternate"> elements for (title, href) pairs, ending the <head>."""
    return "".join(f'<link rel="alternate" type="application/rss+xml" title="{title}" '
                   f'href="{href}">' for title, href in feeds) + "</head>"


@pytest.mark.parametrize("body_class", ["post-template-default single single-post", "post"])
def test_a_post_page_naming_only_its_comments_feed_is_still_that_post(
        site: Site, archive: Archive, body_class: str) -> None:
    """A WordPress theme without ``automatic-feed-links``: a post's page names no blog feed,
    only the post's own comments feed (/link-rot/feed/), below the post's folder.  Taken for
    the home page, the post would be registered as its comments feed and cite the spam in
    them.  WordPress marks a post's page (``single``) and titles the feed "... Comments
    Feed": either says it is a post."""
    _wordpress(site)
    base = site.base_url
    site.page("/link-rot/", _wp_page("Link rot", (
        '<article class="post"><h1>Link rot</h1><p>A <a href="https://study.example.org/rot">'
        'study</a>.</p></article>'), body_class).replace("</head>", _head_links(
            ("Field Notes &raquo; Link rot Comments Feed", f"{base}/link-rot/feed/"))))
    site.page("/link-rot/feed/", COMMENTS_FEED.format(base=base),
              content_type="application/rss+xml")
    source, _new = add_source(archive, site.url("/link-rot/"))
    assert (source.kind, source.location) == ("page", site.url("/link-rot/"))
    discover(archive)
    assert _cited(archive) == ["https://study.example.org/rot"]


def test_a_home_page_naming_its_comments_feed_first_registers_the_posts_feed(
        site: Site, archive: Archive) -> None:
    """Every <link rel="alternate"> is looked at, comments feeds passed over."""
    _wordpress(site)
    base = site.base_url
    site.page("/", _wp_page("Field Notes", "<h1>Field Notes</h1>", "home blog").replace(
        "</head>", _head_links(("Field Notes &raquo; Comments Feed", f"{base}/comments/feed/"),
                               ("Field Notes &raquo; Feed", f"{base}/feed/"))))
    site.page("/comments/feed/", COMMENTS_FEED.format(base=base),
              content_type="application/rss+xml")
    source, _new = add_source(archive, site.url("/"))
    assert (source.kind, source.location) == ("feed", site.url("/feed/"))


def test_a_home_page_naming_its_feed_on_a_feed_service_registers_that_feed(
        site: Site, archive: Archive) -> None:
    """An older blog's home page names its FeedBurner feed (another host), the only feed it
    names.  A page at the site's root is the home page wherever its feed is: not one "post"
    of excerpts titled with the blog's name."""
    feeds = Site("feeds").start()
    try:
        base = site.base_url
        feeds.page("/FieldNotes", f"""<?xml version="1.0"?><rss version="2.0"><channel>
<title>Field Notes</title><link>{base}/</link><description>d</description>
<item><title>Link rot</title><link>{base}/link-rot/</link><description>A
&lt;a href="https://study.example.org/rot"&gt;study&lt;/a&gt;.</description></item>
</channel></rss>""", content_type="application/rss+xml")
        site.page("/", _wp_page("Field Notes", "<h1>Field Notes</h1>", "home").replace(
            "</head>", _head_links(("Field Notes", feeds.url("/FieldNotes")))))
        source, _new = add_source(archive, site.url("/"))
        assert (source.kind, source.location) == ("feed", feeds.url("/FieldNotes"))
    finally:
        feeds.stop()


def test_a_post_page_cut_short_keeps_the_links_it_cites(tmp_path: Path) -> None:
    """A single-post source.  On a later discovery the server drops the connection halfway
    through the post's HTML.  Read as if whole, the post would lose the citations of its
    second half, left out of ``archiver report`` and its CI exit status although the author
    never removed them: a body cut short is a source error, and nothing changes."""
    first_half = (b"<html><head><title>Reading list</title></head><body><article>"
                  b"<h1>Reading list</h1><p>See <a href='https://early.example/one'>one</a>.</p>"
                  + b"<p>" + b"A paragraph of the post. " * 200 + b"</p>")
    html = first_half + (b"<p>And <a href='https://late.example/two'>two</a>.</p>"
                         b"</article></body></html>")
    mode = {"cut": False}

    def answer(method: str, path: str) -> bytes:
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(html))
        return head + (first_half if mode["cut"] else html)

    server = RawSite(answer)
    settings = make_settings(tmp_path / "data")
    initialise(settings)
    try:
        with Archive.open(settings) as archive:
            add_source(archive, server.url("/2009/06/reading-list"))
            discover(archive)
            assert report(archive)[1]["https://late.example/two"]["cited"] is True
            mode["cut"] = True
            discover(archive)
            rows = report(archive)[1]
    finally:
        server.close()
    assert rows["https://late.example/two"]["cited"] is True, rows["https://late.example/two"]
