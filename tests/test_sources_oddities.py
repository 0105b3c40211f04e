"""Oddities of real blogs' sources: tracking queries on post links, xml:base, paged feeds."""

from __future__ import annotations

from sqlalchemy import select

from archiver.archive import Archive
from archiver.demo.fixtureweb import Site
from archiver.discover import add_source, discover
from archiver.extract import extract_links
from archiver.models import Post
from archiver.sources import detect_kind, read_posts

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
