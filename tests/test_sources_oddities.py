"""Oddities of real blogs' sources: tracking queries on post links, xml:base, paged feeds."""

from __future__ import annotations

from sqlalchemy import select

from archiver.archive import Archive
from archiver.demo.fixtureweb import Site
from archiver.discover import add_source, discover
from archiver.models import Post

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

