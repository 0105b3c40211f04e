"""Reading posts from feeds, sitemaps, pages, WordPress exports and folders."""

from __future__ import annotations

import gzip
import logging
import socket
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from archiver.demo.fixtureweb import Site
from archiver.errors import SourceError
from archiver.extract import extract_links
from archiver.models import SourceKind
from archiver.net.client import HttpClient
from archiver.settings import load_settings
from archiver.sources import PostData, detect_kind, read_posts

FIXTURES = Path(__file__).parent / "fixtures"

RSS = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">
<channel><title>Blog</title><link>{base}/</link><description>d</description>
<item><title>Second  post</title><link>{base}/posts/second</link>
  <pubDate>Wed, 07 Feb 2024 10:30:00 +0200</pubDate>
  <description>short summary</description>
  <content:encoded><![CDATA[<p>See <a href="https://ext.example.org/a?x=1&amp;y=2">this</a>
   and <a href="/posts/first">my older post</a>.</p>]]></content:encoded></item>
<item><title>First post</title><link>{base}/posts/first</link>
  <pubDate>Mon, 01 Jan 2024 00:00:00 GMT</pubDate>
  <description>&lt;p&gt;Only a &lt;a href="https://summary.example.org/"&gt;summary&lt;/a&gt;&lt;/p&gt;
  </description></item>
</channel></rss>"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Atom blog</title>
<id>urn:uuid:1</id><updated>2024-03-01T00:00:00Z</updated>
<link rel="self" href="{base}/atom.xml"/>
<entry><title type="html">Atom &amp;amp; entry</title><id>urn:uuid:2</id>
  <link rel="alternate" type="text/html" href="{base}/atom/one"/>
  <published>2024-02-29T23:00:00-02:00</published><updated>2024-03-01T00:00:00Z</updated>
  <content type="html">&lt;p&gt;An &lt;iframe src="https://video.example.net/e/1"&gt;&lt;/iframe&gt;&lt;/p&gt;</content>
</entry>
<entry><title>Only updated</title><id>urn:uuid:3</id><link href="{base}/atom/two"/>
  <updated>2024-01-15T12:00:00Z</updated><summary>plain text</summary></entry>
</feed>"""

ARTICLE_PAGE = """<!doctype html><html><head><title>{title} | Blog</title>
<meta property="og:title" content="{title}"></head>
<body><nav><a href="https://blogroll.example.net/">A friend's blog</a></nav>
<article><h1>{title}</h1><p>Body of {title} citing
<a href="https://cited.example.org/{slug}">a source</a>.</p></article>
<aside><a href="https://ads.example.net/">ad</a></aside></body></html>"""

BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<{root}>&lol9;</{root}>"""

XXE_SITEMAP = """<?xml version="1.0"?>
<!DOCTYPE urlset [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
<url><loc>http://127.0.0.1/&xxe;</loc></url></urlset>"""


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with Site("blog") as running:
        yield running


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpClient]:
    settings = load_settings(env={}, overrides={
        "data_dir": str(tmp_path_factory.mktemp("data")),
        "fetch.allow_private_networks": True,
        "fetch.per_host_delay": "0s",
        "fetch.timeout": "5s",
    })
    with HttpClient(settings) as http:
        yield http


def read_all(location: str, client: HttpClient) -> tuple[SourceKind, list[PostData]]:
    kind = detect_kind(location, client)
    return kind, list(read_posts(kind, location, client))


def outbound(post: PostData, site_url: str | None = None) -> list[str | None]:
    return [link.url for link in extract_links(post.html, post.url, site_url)]


# -- feeds -------------------------------------------------------------------------------


def test_rss_feed(site: Site, client: HttpClient) -> None:
    site.page("/rss.xml", RSS.format(base=site.base_url), content_type="application/rss+xml")
    kind, posts = read_all(site.url("/rss.xml"), client)
    assert kind is SourceKind.FEED
    second, first = posts
    assert second.url == site.url("/posts/second")
    assert second.title == "Second post"
    assert second.published_at == datetime(2024, 2, 7, 8, 30)
    assert outbound(second) == ["https://ext.example.org/a?x=1&y=2"]
    assert first.title == "First post"
    assert first.published_at == datetime(2024, 1, 1)
    assert outbound(first) == ["https://summary.example.org/"]


def test_atom_feed_served_as_plain_xml(site: Site, client: HttpClient) -> None:
    site.page("/atom.xml", ATOM.format(base=site.base_url), content_type="application/xml")
    kind, posts = read_all(site.url("/atom.xml"), client)
    assert kind is SourceKind.FEED
    one, two = posts
    assert (one.url, one.title) == (site.url("/atom/one"), "Atom & entry")
    assert one.published_at == datetime(2024, 3, 1, 1, 0)
    assert outbound(one) == ["https://video.example.net/e/1"]
    assert two.published_at == datetime(2024, 1, 15, 12, 0)
    assert two.html == "plain text"


def test_malformed_feed_is_a_source_error(site: Site, client: HttpClient) -> None:
    site.page("/broken.rss", b"<rss><channel><item><title>x</ti",
              content_type="application/rss+xml")
    assert detect_kind(site.url("/broken.rss"), client) is SourceKind.FEED
    with pytest.raises(SourceError, match="cannot read the feed"):
        list(read_posts(SourceKind.FEED, site.url("/broken.rss"), client))
    site.page("/notafeed", "<html><body>hello</body></html>")
    with pytest.raises(SourceError, match="cannot read the feed"):
        list(read_posts(SourceKind.FEED, site.url("/notafeed"), client))


def test_feed_declaring_entities_is_refused(site: Site, client: HttpClient) -> None:
    site.page("/bomb.rss", BOMB.format(root="rss"), content_type="application/rss+xml")
    with pytest.raises(SourceError, match="entities"):
        list(read_posts(SourceKind.FEED, site.url("/bomb.rss"), client))


# -- sitemaps and pages ------------------------------------------------------------------


def test_sitemap_index_to_sitemaps_to_pages(site: Site, client: HttpClient,
                                            caplog: pytest.LogCaptureFixture) -> None:
    base = site.base_url
    site.page("/sitemap_index.xml", f"""<?xml version="1.0" encoding="UTF-8"?>
<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
<sitemap><loc>{base}/sitemap-posts.xml</loc></sitemap>
<sitemap><loc>{base}/sitemap-pages.xml.gz</loc></sitemap>
<sitemap><loc>{base}/sitemap_index.xml</loc></sitemap>
</sitemapindex>""", content_type="application/xml")
    site.page("/sitemap-posts.xml", f"""<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
<url><loc>{base}/p/alpha</loc><lastmod>2024-02-01T10:00:00+01:00</lastmod></url>
<url><loc>{base}/p/gone</loc></url>
<url><loc>{base}/p/alpha</loc></url></urlset>""", content_type="text/xml")
    pages = f"""<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
<url><loc>{base}/p/beta</loc><lastmod>2024-01-01</lastmod></url></urlset>"""
    site.page("/sitemap-pages.xml.gz", gzip.compress(pages.encode()),
              content_type="application/x-gzip")
    site.page("/p/alpha", ARTICLE_PAGE.format(title="Alpha", slug="alpha"))
    site.page("/p/beta", ARTICLE_PAGE.format(title="Beta", slug="beta").replace(
        "<article>", '<article><time datetime="2023-12-24T18:00:00Z">Xmas</time>'))

    with caplog.at_level(logging.WARNING):
        kind, posts = read_all(site.url("/sitemap_index.xml"), client)
    assert kind is SourceKind.SITEMAP
    assert [(post.url, post.title) for post in posts] == [
        (site.url("/p/alpha"), "Alpha"), (site.url("/p/beta"), "Beta")]
    assert posts[0].published_at == datetime(2024, 2, 1, 9, 0)  # from <lastmod>
    assert posts[1].published_at == datetime(2023, 12, 24, 18, 0)  # the page's own date wins
    assert outbound(posts[0]) == ["https://cited.example.org/alpha"]  # no nav, no aside
    assert "/p/gone" in caplog.text and "404" in caplog.text


def test_gzip_content_encoding_is_undone(site: Site, client: HttpClient) -> None:
    body = f"""<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
<url><loc>{site.base_url}/p/gamma</loc></url></urlset>"""
    site.page("/gz-sitemap.xml", gzip.compress(body.encode()), content_type="application/xml",
              headers={"Content-Encoding": "gzip"})
    site.page("/p/gamma", ARTICLE_PAGE.format(title="Gamma", slug="gamma"))
    kind, posts = read_all(site.url("/gz-sitemap.xml"), client)
    assert kind is SourceKind.SITEMAP
    assert [post.title for post in posts] == ["Gamma"]


def test_malformed_and_hostile_sitemaps_are_refused(site: Site, client: HttpClient) -> None:
    site.page("/bad-sitemap.xml", "<urlset><url><loc>x</url>", content_type="application/xml")
    site.page("/bomb-sitemap.xml", BOMB.format(root="urlset"), content_type="application/xml")
    site.page("/xxe-sitemap.xml", XXE_SITEMAP, content_type="application/xml")
    with pytest.raises(SourceError, match="malformed XML"):
        list(read_posts(SourceKind.SITEMAP, site.url("/bad-sitemap.xml"), client))
    for path in ("/bomb-sitemap.xml", "/xxe-sitemap.xml"):
        assert detect_kind(site.url(path), client) is SourceKind.SITEMAP
        with pytest.raises(SourceError, match="refused XML"):
            list(read_posts(SourceKind.SITEMAP, site.url(path), client))
    with pytest.raises(SourceError, match="not a sitemap"):
        list(read_posts(SourceKind.SITEMAP, site.url("/rss.xml"), client))


def test_single_page(site: Site, client: HttpClient) -> None:
    site.page("/one-post", """<html><head><title>Fallback title</title>
<meta property="article:published_time" content="2024-05-05T05:05:05+00:00">
<base href="https://cdn.blog.test/assets/"></head>
<body><header><a href="https://header.example.net/">h</a></header>
<main><p>Main text with <a href="img/pic">a relative link</a> and
<a href="https://main.example.org/">one more</a>.</p></main></body></html>""")
    site.redirect("/short", "/one-post")
    kind, posts = read_all(site.url("/short"), client)
    assert kind is SourceKind.PAGE
    [post] = posts
    assert post.url == site.url("/one-post")
    assert post.title == "Fallback title"
    assert post.published_at == datetime(2024, 5, 5, 5, 5, 5)
    assert outbound(post) == ["https://cdn.blog.test/assets/img/pic", "https://main.example.org/"]


def test_page_without_marked_content_drops_furniture(site: Site, client: HttpClient) -> None:
    site.page("/plain", """<html><body><nav><a href="https://menu.example.net/">m</a></nav>
<h1>Plain</h1><p><a href="https://kept.example.org/">kept</a></p>
<footer><a href="https://footer.example.net/">f</a></footer></body></html>""")
    [post] = read_posts(SourceKind.PAGE, site.url("/plain"), client)
    assert post.title == "Plain"
    assert outbound(post) == ["https://kept.example.org/"]


# -- WordPress exports -------------------------------------------------------------------


def test_wxr_export(client: HttpClient) -> None:
    location = str(FIXTURES / "wxr-sample.xml")
    kind = detect_kind(location, client)
    assert kind is SourceKind.WXR
    posts = list(read_posts(kind, location, client))
    assert [(post.url, post.title) for post in posts] == [
        ("https://fieldnotes.example.com/2024/01/on-link-rot/", "On Link Rot"),
        ("https://fieldnotes.example.com/about/", "About"),
    ]
    assert posts[0].published_at == datetime(2024, 1, 2, 10, 0)
    assert posts[1].published_at == datetime(2024, 1, 1, 8, 30)  # from pubDate
    assert outbound(posts[0]) == ["https://www.example.org/study",
                                  "https://www.youtube.com/embed/abc"]


def test_malformed_and_hostile_wxr(tmp_path: Path, client: HttpClient) -> None:
    truncated = tmp_path / "truncated.xml"
    truncated.write_text((FIXTURES / "wxr-sample.xml").read_text()[:3000])
    assert detect_kind(str(truncated), client) is SourceKind.WXR
    with pytest.raises(SourceError, match="malformed WordPress export"):
        list(read_posts(SourceKind.WXR, str(truncated), client))
    bomb = tmp_path / "bomb.xml"
    bomb.write_text(BOMB.format(root="rss"))
    with pytest.raises(SourceError, match="refused XML"):
        detect_kind(str(bomb), client)
    with pytest.raises(SourceError, match="refused XML"):
        list(read_posts(SourceKind.WXR, str(bomb), client))
    plain_rss = tmp_path / "feed.xml"
    plain_rss.write_text(RSS.format(base="https://x.test"))
    with pytest.raises(SourceError, match="unknown source type"):
        detect_kind(str(plain_rss), client)
    with pytest.raises(SourceError, match="not a WordPress export"):
        list(read_posts(SourceKind.WXR, str(plain_rss), client))


# -- folders -----------------------------------------------------------------------------


def test_folder_of_markdown_and_html(tmp_path: Path, client: HttpClient,
                                     caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "2023").mkdir()
    (tmp_path / ".git").mkdir()
    (tmp_path / "2023" / "2023-11-05-dated-name.md").write_text(
        "# Heading title\n\nA [markdown link](https://md.example.org/x) and a "
        "[relative one](../other.md) and <https://auto.example.org/>.\n")
    (tmp_path / "a-post.md").write_text(
        "---\ntitle: Front  matter title\ndate: 2024-04-01 12:00:00+02:00\n"
        "url: https://blog.example.com/a-post/\n---\n"
        "Links to [home](https://blog.example.com/) and [elsewhere](https://else.example.org/).\n"
        '\n<iframe src="https://embed.example.net/v"></iframe>\n')
    (tmp_path / "b-page.html").write_text(
        "<html><head><title>HTML page</title></head><body><nav><a href='https://n.example/'>n"
        "</a></nav><article><p><a href='https://html.example.org/'>h</a></p></article>"
        "</body></html>")
    (tmp_path / "c-fm.htm").write_text(
        "---\ntitle: HTML with front matter\ndate: 2022-02-02\n---\n"
        "<p><a href='https://fm.example.org/'>fm</a></p>")
    (tmp_path / "d-latin1.html").write_bytes(
        "<p>Caf\xe9 <a href='https://latin.example.org/'>x</a></p>".encode("latin-1"))
    (tmp_path / "e-bad-front-matter.md").write_text("---\ntitle: [unclosed\n---\nbody\n")
    (tmp_path / "notes.txt").write_text("[ignored](https://txt.example.org/)")
    (tmp_path / ".git" / "hidden.md").write_text("[hidden](https://hidden.example.org/)")

    with caplog.at_level(logging.WARNING):
        kind, posts = read_all(str(tmp_path), client)
    assert kind is SourceKind.FOLDER
    names = [post.url.rsplit("/", 1)[-1] for post in posts]
    assert names == ["2023-11-05-dated-name.md", "", "b-page.html", "c-fm.htm",
                     "d-latin1.html"]
    dated, fm_md, html_page, fm_html, latin = posts
    assert dated.url == (tmp_path / "2023" / "2023-11-05-dated-name.md").resolve().as_uri()
    assert (dated.title, dated.published_at) == ("Heading title", datetime(2023, 11, 5))
    assert outbound(dated) == ["https://md.example.org/x", "https://auto.example.org/"]
    assert fm_md.url == "https://blog.example.com/a-post/"
    assert fm_md.title == "Front matter title"
    assert fm_md.published_at == datetime(2024, 4, 1, 10, 0)
    assert outbound(fm_md) == ["https://else.example.org/", "https://embed.example.net/v"]
    assert html_page.title == "HTML page"
    assert outbound(html_page) == ["https://html.example.org/"]
    assert (fm_html.title, fm_html.published_at) == ("HTML with front matter",
                                                     datetime(2022, 2, 2))
    assert outbound(fm_html) == ["https://fm.example.org/"]
    assert "Caf\ufffd" in latin.html
    assert "e-bad-front-matter.md" in caplog.text


# -- detection ---------------------------------------------------------------------------


def test_unknown_and_unreachable_sources(site: Site, client: HttpClient, tmp_path: Path) -> None:
    site.page("/logo.png", b"\x89PNG\r\n\x1a\n" + bytes(32), content_type="image/png")
    with pytest.raises(SourceError, match=r"unknown source type .*image/png"):
        detect_kind(site.url("/logo.png"), client)
    with pytest.raises(SourceError, match="HTTP 404"):
        detect_kind(site.url("/missing"), client)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    with pytest.raises(SourceError, match=r"cannot read .*connection_refused"):
        detect_kind(f"http://127.0.0.1:{closed_port}/feed.xml", client)
    text_file = tmp_path / "links.txt"
    text_file.write_text("https://example.org/")
    with pytest.raises(SourceError, match="unknown source type"):
        detect_kind(str(text_file), client)
    with pytest.raises(SourceError, match="no such file or folder"):
        detect_kind(str(tmp_path / "nope"), client)
    with pytest.raises(SourceError, match="needs an http"):
        list(read_posts(SourceKind.FEED, str(tmp_path), client))


def test_huge_files_in_a_folder_are_skipped_not_read(tmp_path: Path) -> None:
    from archiver.sources import folder

    posts = tmp_path / "posts"
    posts.mkdir()
    (posts / "ok.md").write_text("---\ntitle: Fine\n---\n[x](https://example.org/x)\n")
    with (posts / "huge.html").open("wb") as handle:
        handle.truncate(folder.MAX_POST_BYTES + 1)  # sparse: costs no disk
    found = list(folder.read_folder(posts))
    assert [post.title for post in found] == ["Fine"]
