"""Outbound link extraction."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.extract import ExtractedLink, extract_links

PAGE = "https://blog.example.com/2024/01/post.html"


def by_href(links: list[ExtractedLink]) -> dict[str, ExtractedLink]:
    return {link.href: link for link in links}


def test_every_kind_of_reference_in_document_order() -> None:
    html = """
    <p>Read <a href="https://a.example.org/x">this</a>.</p>
    <iframe src="https://www.youtube.com/embed/abc" title="A talk"></iframe>
    <video src="https://media.example.net/v.mp4" poster="https://media.example.net/p.jpg">
      <source src="https://media.example.net/v.webm"></video>
    <audio src="https://media.example.net/a.mp3"></audio>
    <embed src="https://flash.example.net/e.swf">
    <object data="https://docs.example.net/paper.pdf"></object>
    <picture><source srcset="https://img.example.net/i.webp"></picture>
    <img src="https://img.example.net/i.png">
    """
    links = extract_links(html, PAGE)
    assert [(link.element, link.url) for link in links] == [
        ("a", "https://a.example.org/x"),
        ("iframe", "https://www.youtube.com/embed/abc"),
        ("video", "https://media.example.net/v.mp4"),
        ("source", "https://media.example.net/v.webm"),
        ("audio", "https://media.example.net/a.mp3"),
        ("embed", "https://flash.example.net/e.swf"),
        ("object", "https://docs.example.net/paper.pdf"),
    ]
    assert links[1].anchor_text == "A talk"
    assert all(link.verdict is None for link in links)


def test_relative_protocol_relative_and_entities() -> None:
    html = """<p><a href="https://other.example.org/a/b/">dir</a>
    <a href=" //cdn.example.net/lib.js ">proto</a>
    <a href="https://q.example.net/search?a=1&amp;b=2">query</a></p>"""
    links = by_href(extract_links(html, PAGE))
    assert links["//cdn.example.net/lib.js"].url == "https://cdn.example.net/lib.js"
    assert links["https://q.example.net/search?a=1&b=2"].url == \
        "https://q.example.net/search?a=1&b=2"


def test_relative_links_resolve_against_page_then_base_href() -> None:
    assert extract_links('<a href="../x">x</a>', PAGE, site_url="https://other.test/") == [
        ExtractedLink("../x", "https://blog.example.com/2024/x", None, "a", "x", "x")]
    html = '<head><base href="https://mirror.example.net/docs/"></head><a href="page?id=1">p</a>'
    [link] = extract_links(html, PAGE)
    assert link.url == "https://mirror.example.net/docs/page?id=1"
    # A relative <base href> is itself resolved against the page.
    html = '<base href="/b/"><a href="c">c</a>'
    assert extract_links(html, PAGE, site_url="https://other.test/")[0].url == \
        "https://blog.example.com/b/c"


def test_links_resolve_as_the_readers_browser_resolves_them() -> None:
    """On an http page a browser reads another scheme without slashes, or with backslashes,
    as a link to another site: that is the page the reader reaches, so the one to keep."""
    page = "http://blog.example.com/2024/post.html"
    html = ('<a href="https:example.org/a">1</a> <a href="https:/example.org/b">2</a> '
            '<a href="http:\\\\example.net\\c">3</a> <a href="https:">4</a>')
    links = by_href(extract_links(html, page))
    assert links["https:example.org/a"].url == "https://example.org/a"
    assert links["https:/example.org/b"].url == "https://example.org/b"
    assert links["http:\\\\example.net\\c"].url == "http://example.net/c"
    assert links["https:"].verdict == "invalid_url"  # no URL to a browser either
    # In a post read from a local file, a protocol-relative link still means the web.
    [link] = extract_links('<a href="//cdn.example.net/x">x</a>', "file:///posts/a.md")
    assert link.url == "https://cdn.example.net/x"


def test_same_site_links_are_not_outbound() -> None:
    html = """<a href="/about">about</a><a href="https://blog.example.com/x">abs</a>
    <a href="https://www.blog.example.com/y">www</a><a href="HTTPS://BLOG.EXAMPLE.COM/z">caps</a>
    <a href="https://example.com/">parent domain is elsewhere</a>"""
    assert [link.url for link in extract_links(html, PAGE)] == ["https://example.com/"]
    # The site, not the post's URL, decides when given (e.g. a feed on another host).
    links = extract_links('<a href="https://blog.example.com/x">x</a>', PAGE,
                          site_url="https://www.feeds.example.net/")
    assert [link.url for link in links] == ["https://blog.example.com/x"]


def test_non_web_references_are_skipped() -> None:
    html = """<a href="mailto:ada@example.com">mail</a><a href="javascript:void(0)">js</a>
    <a href="tel:+123">tel</a><a href="data:text/plain,hi">data</a><a href="#top">top</a>
    <a href="">empty</a><a href="   ">blank</a><a>no href</a><a href="  JavaScript:x">js2</a>
    <a href="sms:123">sms</a>"""
    assert extract_links(html, PAGE) == []


def test_unsupported_scheme_and_malformed_urls_get_verdicts() -> None:
    html = """<a href="ftp://files.example.org/a.txt">ftp</a>
    <a href="http://exa mple.com/">space</a><a href="http://[broken/">bracket</a>
    <a href="http://host.example:99999/">port</a>"""
    links = by_href(extract_links(html, PAGE))
    assert links["ftp://files.example.org/a.txt"].verdict == "unsupported_scheme"
    for href in ("http://exa mple.com/", "http://[broken/", "http://host.example:99999/"):
        assert links[href].url is None
        assert links[href].verdict == "invalid_url"


def test_anchor_text_and_context_sentence() -> None:
    html = """<article><h1>Title</h1>
    <p>First sentence is here. Then   we cite
       <a href="https://paper.example.org/x">the  <b>original</b> paper</a>, which matters!
       A third sentence follows.</p>
    <ul><li>Item with <a href="https://li.example.org/">a list link</a></li></ul>
    <p><a href="https://img.example.org/"><img src="x.png" alt="A chart"></a></p>
    </article>"""
    links = by_href(extract_links(html, PAGE))
    paper = links["https://paper.example.org/x"]
    assert paper.anchor_text == "the original paper"
    assert paper.context == "Then we cite the original paper, which matters!"
    assert links["https://li.example.org/"].context == "Item with a list link"
    assert links["https://img.example.org/"].anchor_text == "A chart"


def test_long_context_is_clipped_around_the_link() -> None:
    words = " ".join(f"word{i}" for i in range(200))
    html = f'<p>{words} <a href="https://long.example.org/">the link</a> {words}</p>'
    [link] = extract_links(html, PAGE)
    assert link.context is not None
    assert len(link.context) <= 310
    assert "the link" in link.context


def test_duplicates_are_dropped_by_url_and_element() -> None:
    html = """<a href="https://d.example.org/x">one</a><a href="https://D.example.org/x#f">two</a>
    <iframe src="https://d.example.org/x"></iframe><a href="ftp://f.example/">f</a>
    <a href="ftp://f.example/">f again</a>"""
    links = extract_links(html, PAGE)
    assert [(link.element, link.anchor_text) for link in links] == [
        ("a", "one"), ("iframe", None), ("a", "f")]


def test_hashbang_and_route_fragments_are_part_of_the_link() -> None:
    """A 2011 post cites tweets as the web wrote them then (…/#!/user/status/N), a Google
    Groups thread (…/forum/#!topic/…) and a single-page app's route (#/…): each is its own
    link, not the site's front page; an in-page anchor is still no part of a link."""
    html = """<a href="https://social.example.com/#!/jack/status/20">Jack</a>
    <a href="https://social.example.com/#!/biz/status/21">Biz</a>
    <a href="https://groups.example.com/forum/#!topic/comp.lang.python/abc">thread</a>
    <a href="https://app.example.org/#/docs/Über uns">route</a>
    <a href="https://docs.example.org/guide#install">anchor</a>"""
    assert [link.url for link in extract_links(html, PAGE)] == [
        "https://social.example.com/#!/jack/status/20",
        "https://social.example.com/#!/biz/status/21",
        "https://groups.example.com/forum/#!topic/comp.lang.python/abc",
        "https://app.example.org/#/docs/%C3%9Cber%20uns",
        "https://docs.example.org/guide"]


def test_odd_inputs_do_not_raise() -> None:
    for html in ("", "   ", "<", "<a href=", "\x00\x01\x02", "<a href='\ud800'>x</a>",
                 "<a href='http://\x00/'>x</a>", "<base href='http://[x'><a href=y>y</a>"):
        extract_links(html, PAGE)
    assert extract_links('<a href="https://x.example.org/">x</a>', "") != []
    assert isinstance(extract_links('<a href="/x">x</a>', "http://[broken/"), list)


html_fragments = st.sampled_from([
    "<a href=\"", "\">", "</a>", "<p>", "</p>", "<iframe src=", "<video><source src=",
    "<object data='", "'>", "<base href=", "http://", "https://", "//", "#", "mailto:",
    "ftp://", "[", "]", ":99999", " ", "&amp;", "&#0;", "\x00", "é", ".", "!", "<li>",
    "example.org", "www.", "/path?q=1", "<script>", "</script>", "<!--", "-->", "\ud800",
])


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_never_raises_on_arbitrary_text(text: str) -> None:
    extract_links(text, PAGE)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(html_fragments, st.text(max_size=5)), max_size=40),
       st.sampled_from([PAGE, "", "file:///tmp/x.md", "http://[broken/"]))
def test_never_raises_on_html_like_text(parts: list[str], page_url: str) -> None:
    for link in extract_links("".join(parts), page_url):
        assert (link.url is None) == (link.verdict is not None)
