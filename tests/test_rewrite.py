"""Replay rewriting of archived HTML and CSS: URLs change, every other character stays."""

from __future__ import annotations

import re
from html import escape
from xml.etree import ElementTree

import pytest
from ada_url import join_url, normalize_url
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.replay.rewrite import (
    MAX_SRCDOC_DEPTH,
    UrlRewriter,
    _resolve,
    _rewrite_css,
    _rewrite_html,
    embedded_urls_html,
    query_encoded,
    rewrite_css,
    rewrite_html,
)

TS = "20240102030405"
RW = UrlRewriter(base_url="http://ex.com/dir/page.html", timestamp=TS)
NAV = f"/web/{TS}/"
MP = f"/web/{TS}mp_/"
ARCHIVE_PREFIX = re.compile(rf"/web/{TS}(?:mp_)?/")


def html(text: str) -> str:
    out = rewrite_html(text, RW)
    assert out == _rewrite_html(text, RW)  # not rescued by the safety net
    return out


def css(text: str) -> str:
    out = rewrite_css(text, RW)
    assert out == _rewrite_css(text, RW)
    return out


# --- UrlRewriter -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://other.org/a?b=1#c", "http://other.org/a?b=1#c"),
        ("HTTPS://other.org/", "https://other.org/"),
        ("img.png", "http://ex.com/dir/img.png"),
        ("../up.png", "http://ex.com/up.png"),
        ("/root", "http://ex.com/root"),
        ("?q=1", "http://ex.com/dir/page.html?q=1"),
        ("//cdn.org/x.js", "http://cdn.org/x.js"),
        ("  spaced.png\n", "http://ex.com/dir/spaced.png"),
        ("x.html#frag", "http://ex.com/dir/x.html#frag"),
    ],
)
def test_rewrite_resolves(url: str, expected: str) -> None:
    assert RW.rewrite(url) == NAV + expected
    assert RW.rewrite(url, "mp_") == MP + expected


@pytest.mark.parametrize(
    "url",
    [
        "", "   ", "#frag", "data:image/png;base64,AAAA", "javascript:void(0)", " JavaScript:x",
        "java\tscript:x", "mailto:a@b.c", "tel:+123", "about:blank", "blob:http://ex.com/u",
        "ftp://ex.com/f", "http://[::1", "https:",
    ],
)
def test_rewrite_leaves_non_http(url: str) -> None:
    assert RW.rewrite(url) == url
    assert RW.rewrite(url, "mp_") == url


URL_PIECES = st.sampled_from([
    *"a/.?#:;%@=&x[] \t\\", "..", "http://", "https://", "HTTP://", "//", "h.org", "http:",
    "https:", "javascript:",
])
BASES = st.sampled_from([
    "http://ex.com/dir/page.html", "http://ex.com", "https://ex.com/", "http://ex.com/a;p?q=1#f",
    "http://ex.com/a/b/", "http://u@ex.com:8080/x/y?", "http://ex.com/./x", "about:blank", "",
])


@settings(max_examples=300, deadline=None)
@given(BASES, st.lists(URL_PIECES, min_size=1, max_size=12).map("".join))
def test_resolve_shortcuts_agree_with_the_url_standard(base: str, target: str) -> None:
    try:
        expected = join_url(base, target)
    except ValueError:
        expected = "<error>"
    try:  # a shortcut may return an absolute URL unnormalised ("http://a"): the same address
        got = normalize_url(_resolve(base, target))
    except ValueError:
        got = "<error>"
    assert got == expected


@pytest.mark.parametrize(("base", "target"), [
    ("http://ex.com/dir/page.html", "https:evil.example/a"),  # another scheme than the page's
    ("http://ex.com/dir/page.html", "https:/evil.example/a"),
    ("http://ex.com/dir/page.html", "https:\\\\evil.example/a"),
    ("https://ex.com/dir/page.html", "https:\\\\evil.example/a"),  # the same scheme
    ("https://ex.com/dir/page.html", "http:evil.example/a"),
])
def test_urls_a_browser_reads_as_another_site_stay_in_the_archive(base: str,
                                                                   target: str) -> None:
    """Left as they were, these took the reader from the archive to the live web."""
    scheme = target.split(":", 1)[0]
    rewriter = UrlRewriter(base, TS)
    assert rewriter.rewrite(target) == f"{NAV}{scheme}://evil.example/a"
    assert rewriter.rewrite(target, "mp_") == f"/web/{TS}mp_/{scheme}://evil.example/a"


def test_rewrite_absolute_prefix() -> None:
    rw = UrlRewriter("https://ex.com/", TS, prefix="https://replay.example/web/")
    assert rw.rewrite("a") == f"https://replay.example/web/{TS}/https://ex.com/a"


# --- HTML attributes -------------------------------------------------------------------------


def test_links_are_navigational_resources_are_bare() -> None:
    doc = (
        '<a href="a.html">a</a><area href=b.html><form action="/post"><button formaction=f>'
        '<img src="i.png"><script src="s.js"></script><link rel=icon href="fav.ico">'
        '<iframe src="fr.html"></iframe><frame src=fr2.html><video src=v.mp4 poster=p.jpg>'
        "<audio src=a.mp3><track src=t.vtt><embed src=e.swf><object data=o.swf>"
        "<body background=bg.gif><td background=td.gif><blockquote cite=c.html>"
    )
    assert html(doc) == (
        f'<a href="{NAV}http://ex.com/dir/a.html">a</a><area href={NAV}http://ex.com/dir/b.html>'
        f'<form action="{NAV}http://ex.com/post"><button formaction={NAV}http://ex.com/dir/f>'
        f'<img src="{MP}http://ex.com/dir/i.png"><script src="{MP}http://ex.com/dir/s.js"></script>'
        f'<link rel=icon href="{MP}http://ex.com/dir/fav.ico">'
        f'<iframe src="{MP}http://ex.com/dir/fr.html"></iframe><frame src={MP}http://ex.com/dir/fr2.html>'
        f"<video src={MP}http://ex.com/dir/v.mp4 poster={MP}http://ex.com/dir/p.jpg>"
        f"<audio src={MP}http://ex.com/dir/a.mp3><track src={MP}http://ex.com/dir/t.vtt>"
        f"<embed src={MP}http://ex.com/dir/e.swf><object data={MP}http://ex.com/dir/o.swf>"
        f"<body background={MP}http://ex.com/dir/bg.gif><td background={MP}http://ex.com/dir/td.gif>"
        f"<blockquote cite={NAV}http://ex.com/dir/c.html>"
    )


def test_quoting_styles_and_case_kept() -> None:
    doc = "<A HREF='x'>1</A><IMG\nSrc = \"y.png\" ALT=z><img src=z.png/>"
    assert html(doc) == (
        f"<A HREF='{NAV}http://ex.com/dir/x'>1</A>"
        f'<IMG\nSrc = "{MP}http://ex.com/dir/y.png" ALT=z>'
        f"<img src={MP}http://ex.com/dir/z.png/>"
    )


def test_protocol_relative() -> None:
    assert html('<script src="//cdn.org/x.js">') == f'<script src="{MP}http://cdn.org/x.js">'


def test_entities_decoded_and_reescaped() -> None:
    assert html('<a href="s?a=1&amp;b=2">') == f'<a href="{NAV}http://ex.com/dir/s?a=1&amp;b=2">'
    # a bare & is escaped on the way out; the URL the browser sees is the same
    assert html("<a href='s?a=1&b=2'>") == f"<a href='{NAV}http://ex.com/dir/s?a=1&amp;b=2'>"
    # legacy reference followed by "=" is literal in attribute values
    assert html('<a href="?x=1&copy=2">') == f'<a href="{NAV}http://ex.com/dir/page.html?x=1&amp;copy=2">'
    assert html('<a href="&#x2F;p">') == f'<a href="{NAV}http://ex.com/p">'


def test_quote_characters_in_new_value_are_escaped() -> None:
    rw = UrlRewriter("http://ex.com/it's/", TS)
    assert rewrite_html("<a href='x'>", rw) == f"<a href='{NAV}http://ex.com/it&#39;s/x'>"
    assert rewrite_html("<a href=&#32;x&#32;y>", rw) == f"<a href={NAV}http://ex.com/it's/x%20y>"


def test_plain_links_and_their_neighbours() -> None:
    """A lone double-quoted href without references takes a shortcut; its output must be the
    general pass's: the value rewritten, escaped for its quotes, everything else untouched."""
    rw = UrlRewriter('http://ex.com/a&b/"q"/', TS)
    assert rewrite_html('<a href="x">', rw) == f'<a href="{NAV}http://ex.com/a&amp;b/&quot;q&quot;/x">'
    doc = ('<a href="x" ><a\nhref="y"/><a href="z"title="t"><a href=""><a href="#top">'
           '<a href="mailto:me@ex.com"><a href="x" style="background:url(i.png)">')
    assert html(doc) == (
        f'<a href="{NAV}http://ex.com/dir/x" ><a\nhref="{NAV}http://ex.com/dir/y"/>'
        f'<a href="{NAV}http://ex.com/dir/z"title="t"><a href=""><a href="#top">'
        f'<a href="mailto:me@ex.com">'
        f'<a href="{NAV}http://ex.com/dir/x" style="background:url({MP}http://ex.com/dir/i.png)">')


def test_attributes_without_values_and_gt_in_quotes() -> None:
    doc = '<img title="a > b" hidden src=i.png data-x=\'<img src=no.png>\' async>'
    assert html(doc) == (
        f'<img title="a > b" hidden src={MP}http://ex.com/dir/i.png'
        " data-x='<img src=no.png>' async>"
    )
    assert html("<a href>x</a><a href=>y</a>") == "<a href>x</a><a href=>y</a>"


def test_unclosed_tag_at_eof_kept() -> None:
    unclosed = ('<p><a href="x.html>never closed', "<p>x<img src=y.png", "<a href='x' ", "<!x")
    for doc in unclosed:
        assert html(doc) == doc
    assert html('<img src=a.png><a href="x') == f'<img src={MP}http://ex.com/dir/a.png><a href="x'


def test_srcset() -> None:
    doc = (
        '<img srcset="a.png 1x, b,c.png 2x,d.png 3x , data:image/png;base64,AA== 4x" src=a.png>'
        '<picture><source srcset="w.webp 480w,\n  //cdn.org/w2.webp 960w" type=image/webp>'
        "</picture>"
        '<img srcset="x.png,y.png">'
    )
    assert html(doc) == (
        f'<img srcset="{MP}http://ex.com/dir/a.png 1x, {MP}http://ex.com/dir/b,c.png 2x,'
        f'{MP}http://ex.com/dir/d.png 3x , data:image/png;base64,AA== 4x"'
        f" src={MP}http://ex.com/dir/a.png>"
        f'<picture><source srcset="{MP}http://ex.com/dir/w.webp 480w,\n'
        f'  {MP}http://cdn.org/w2.webp 960w"'
        f" type=image/webp></picture>"
        f'<img srcset="{MP}http://ex.com/dir/x.png,y.png">'
    )


def test_lazy_loading_attributes_are_resources() -> None:
    """Lazy-loading scripts swap data-src/data-srcset/data-lazy-src in for src as the reader
    scrolls: they are images the page shows, data-srcset read as a srcset."""
    doc = ('<img src=ph.gif data-src=a.png data-srcset="b.png 2x, c.png 3x">'
           '<picture><source data-srcset="d.webp 1x"><img data-lazy-src="/e.png"></picture>'
           '<div data-src="not-an-image.html"></div>')
    assert html(doc) == (
        f'<img src={MP}http://ex.com/dir/ph.gif data-src={MP}http://ex.com/dir/a.png '
        f'data-srcset="{MP}http://ex.com/dir/b.png 2x, {MP}http://ex.com/dir/c.png 3x">'
        f'<picture><source data-srcset="{MP}http://ex.com/dir/d.webp 1x">'
        f'<img data-lazy-src="{MP}http://ex.com/e.png"></picture>'
        '<div data-src="not-an-image.html"></div>')
    assert embedded_urls_html(doc, "http://ex.com/dir/page") == [
        "http://ex.com/dir/ph.gif", "http://ex.com/dir/a.png", "http://ex.com/dir/b.png",
        "http://ex.com/dir/c.png", "http://ex.com/dir/d.webp", "http://ex.com/e.png"]


def test_iframe_srcdoc_is_a_document_rewritten_in_place() -> None:
    """An ``<iframe srcdoc>`` is a document whose relative URLs resolve against the page's
    base; its markup is unescaped, rewritten (or read for requisites) and escaped again."""
    doc = ('<base href="http://cdn.org/x/"><iframe srcdoc="<img src=&quot;a.png&quot;>'
           '<a href=/n title=&quot;1&amp;amp;2&quot;>n</a>"></iframe>'
           "<iframe srcdoc='<link rel=stylesheet href=s.css>'></iframe>"
           "<iframe srcdoc=<p>plain</p>></iframe>")
    assert html(doc) == (
        f'<base href="{MP}http://cdn.org/x/"><iframe srcdoc="<img src=&quot;'
        f'{MP}http://cdn.org/x/a.png&quot;><a href={NAV}http://cdn.org/n '
        'title=&quot;1&amp;amp;2&quot;>n</a>"></iframe>'
        f"<iframe srcdoc='<link rel=stylesheet href={MP}http://cdn.org/x/s.css>'></iframe>"
        "<iframe srcdoc=<p>plain</p>></iframe>")
    assert embedded_urls_html(doc, "http://ex.com/") == ["http://cdn.org/x/a.png",
                                                         "http://cdn.org/x/s.css"]


def test_nested_srcdoc_stops_at_its_depth() -> None:
    inner = '<img src="deep.png">'
    for _ in range(MAX_SRCDOC_DEPTH):
        inner = f'<iframe srcdoc="{escape(inner)}"></iframe>'
    assert embedded_urls_html(inner, "http://ex.com/") == ["http://ex.com/deep.png"]
    deeper = f'<iframe srcdoc="{escape(inner)}"></iframe>'
    assert embedded_urls_html(deeper, "http://ex.com/") == []
    assert html(deeper) == deeper


def test_srcset_descriptor_parentheses() -> None:
    out = html('<img srcset="a.png (x, y) 1x, b.png 2x">')
    assert out == (
        f'<img srcset="{MP}http://ex.com/dir/a.png (x, y) 1x, {MP}http://ex.com/dir/b.png 2x">'
    )


def test_base_changes_resolution_for_rest_of_document() -> None:
    doc = '<img src=a.png><base href="http://cdn.org/assets/"><img src=b.png><a href="/c">'
    assert html(doc) == (
        f'<img src={MP}http://ex.com/dir/a.png><base href="{MP}http://cdn.org/assets/">'
        f'<img src={MP}http://cdn.org/assets/b.png><a href="{NAV}http://cdn.org/c">'
    )


def test_relative_base_and_only_first_counts() -> None:
    doc = "<base target=_top><BASE HREF='../other/'><base href=/ignored/><img src=x.png>"
    assert html(doc) == (
        f"<base target=_top><BASE HREF='{MP}http://ex.com/other/'>"
        f"<base href={MP}http://ex.com/ignored/><img src={MP}http://ex.com/other/x.png>"
    )


def test_meta_refresh() -> None:
    cases = {
        '<meta http-equiv="refresh" content="5; url=/next">':
            f'<meta http-equiv="refresh" content="5; url={NAV}http://ex.com/next">',
        "<META HTTP-EQUIV=Refresh CONTENT=\"0;URL='n.html'\">":
            f"<META HTTP-EQUIV=Refresh CONTENT=\"0;URL='{NAV}http://ex.com/dir/n.html'\">",
        '<meta content="3, n.html " http-equiv="refresh">':
            f'<meta content="3, {NAV}http://ex.com/dir/n.html " http-equiv="refresh">',
    }
    for doc, expected in cases.items():
        assert html(doc) == expected
    for doc in (
        '<meta http-equiv="refresh" content="30">',
        '<meta name="og:url" content="/x">',
        '<meta http-equiv="refresh" content="url=/x">',
    ):
        assert html(doc) == doc


def test_input_src_only_for_image_type() -> None:
    doc = "<input type=IMAGE src=a.png><input src=b.png><input type=text src=c.png>"
    assert html(doc) == (
        f"<input type=IMAGE src={MP}http://ex.com/dir/a.png><input src=b.png>"
        "<input type=text src=c.png>"
    )


def test_integrity_dropped_from_link_only() -> None:
    doc = (
        '<link rel="stylesheet" href="s.css" integrity="sha384-x" crossorigin="anonymous">'
        '<link integrity="y"href="t.css"><link href=u.css integrity=z>'
        '<script src="j.js" integrity="sha384-y"></script>'
    )
    assert html(doc) == (
        f'<link rel="stylesheet" href="{MP}http://ex.com/dir/s.css" crossorigin="anonymous">'
        f'<link href="{NAV}http://ex.com/dir/t.css"><link href={NAV}http://ex.com/dir/u.css >'
        f'<script src="{MP}http://ex.com/dir/j.js" integrity="sha384-y"></script>'
    )


def test_only_resource_links_are_embedded() -> None:
    """A browser loads a <link>'s href only for resource relations (stylesheet, icon, ...)."""
    doc = ('<link rel="Shortcut Icon" href="/f.ico"><link rel=canonical href="/p">'
           '<link rel="alternate" type="application/rss+xml" href="/feed">')
    assert html(doc) == (f'<link rel="Shortcut Icon" href="{MP}http://ex.com/f.ico">'
                         f'<link rel=canonical href="{NAV}http://ex.com/p">'
                         f'<link rel="alternate" type="application/rss+xml" '
                         f'href="{NAV}http://ex.com/feed">')


def test_embedded_urls_are_what_replay_serves_bare() -> None:
    from archiver.replay.rewrite import embedded_urls_css, embedded_urls_html

    doc = ('<link rel=stylesheet href=s.css><link rel=canonical href=/p>'
           '<body style="background:url(bg.png)"><img src=a.png srcset="b.png 2x, a.png 1x">'
           '<a href=/nav>n</a><iframe src="//other.org/frame#x"></iframe>'
           '<video poster=p.jpg><source src=v.mp4></video><style>@import "i.css";</style>')
    assert embedded_urls_html(doc, "http://ex.com/dir/page") == [
        "http://ex.com/dir/s.css", "http://ex.com/dir/bg.png", "http://ex.com/dir/a.png",
        "http://ex.com/dir/b.png", "http://other.org/frame", "http://ex.com/dir/p.jpg",
        "http://ex.com/dir/v.mp4", "http://ex.com/dir/i.css"]
    assert embedded_urls_css("@import url(a.css); b{background:url(../b.png)} c{x:url(data:,)}",
                             "http://ex.com/c/s.css") == ["http://ex.com/c/a.css",
                                                          "http://ex.com/b.png"]


@pytest.mark.parametrize(("reference", "codec", "expected"), [
    ("/img?name=привет", "cp1251", "/img?name=%EF%F0%E8%E2%E5%F2"),
    ("/фон?a=ж c\"d&e=€#фраг", "cp1251", "/фон?a=%E6%20c%22d&e=%88#фраг"),  # path as it is
    ("?a=日", "cp1251", "?a=%26%2326085%3B"),  # what the encoding lacks is sent as &#N;
    ("/x?a=ソ", "shift_jis", "/x?a=%83\\"),  # a byte outside the encode set stays a byte
    ("/x?a=жи\nзнь", "koi8_r", "/x?a=%D6%C9%DA%CE%D8"),  # a newline is dropped, as browsers do
    ("/img?name=привет", "utf-8", "/img?name=привет"),  # UTF-8 is the resolver's own
    ("/img?name=%EF", "cp1251", "/img?name=%EF"),
    # UTF-8 read as windows-1252: 0x81 is U+0081 there (Python's cp1252 lacks it), sent back as
    # its byte; U+0080 is not 0x80 (the euro sign), so it is sent as &#128;
    ("/img?name=\u00d1\x81\x80", "cp1252", "/img?name=%D1%81%26%23128%3B"),
])
def test_queries_are_encoded_in_the_documents_encoding(reference: str, codec: str,
                                                       expected: str) -> None:
    assert query_encoded(reference, codec) == expected


def test_non_http_urls_untouched() -> None:
    doc = (
        '<a href="javascript:go()">j</a><a href="#top">t</a><a href="mailto:x@y.z">m</a>'
        '<img src="data:image/gif;base64,R0lGOD=="><a href="tel:1">t</a><a href="">e</a>'
    )
    assert html(doc) == doc


def test_svg_references() -> None:
    doc = '<svg><image href="i.svg"/><use xlink:href="#icon"/><a xlink:href="l.html"/></svg>'
    assert html(doc) == (
        f'<svg><image href="{MP}http://ex.com/dir/i.svg"/><use xlink:href="#icon"/>'
        f'<a xlink:href="{NAV}http://ex.com/dir/l.html"/></svg>'
    )


# --- raw text, comments, styles ------------------------------------------------------------


def test_script_contents_untouched() -> None:
    doc = (
        '<script>var s = "<img src=a.png>"; if (a<b) url("x");</script>'
        '<SCRIPT type="text/html"><a href="t.html"></a></SCRIPT ><img src=b.png>'
    )
    assert html(doc) == (
        '<script>var s = "<img src=a.png>"; if (a<b) url("x");</script>'
        f'<SCRIPT type="text/html"><a href="t.html"></a></SCRIPT ><img src={MP}http://ex.com/dir/b.png>'
    )


def test_xml_documents_self_close_their_scripts() -> None:
    """A browser parses application/xhtml+xml as XML: ``<script src="a.js"/>`` is a whole
    element, and what follows is markup, not script text up to the next ``</script>``."""
    doc = ('<script src="a.js"/>\n<link rel="stylesheet" href="s.css"/><img src="i.png"/>'
           '<script src="b.js"></script><script>var x = "<img src=no.png>";</script>')
    out = rewrite_html(doc, RW, xml=True)
    assert out == _rewrite_html(doc, RW, xml=True)
    assert out == (
        f'<script src="{MP}http://ex.com/dir/a.js"/>\n'
        f'<link rel="stylesheet" href="{MP}http://ex.com/dir/s.css"/>'
        f'<img src="{MP}http://ex.com/dir/i.png"/><script src="{MP}http://ex.com/dir/b.js">'
        '</script><script>var x = "<img src=no.png>";</script>')
    assert embedded_urls_html(doc, "http://ex.com/", xml=True) == [
        "http://ex.com/a.js", "http://ex.com/s.css", "http://ex.com/i.png", "http://ex.com/b.js"]
    # As HTML, the slash means nothing: the rest is the script's text, as a browser reads it.
    assert embedded_urls_html(doc, "http://ex.com/") == ["http://ex.com/a.js"]


def test_an_xml_documents_srcdoc_is_escaped_again_as_xml_wants() -> None:
    """In XHTML a srcdoc's '<' must be written &lt; (raw, it is a fatal XML error and the
    browser drops what follows); an HTML document keeps its raw '<' as it was."""
    doc = ('<html xmlns="http://www.w3.org/1999/xhtml"><body><iframe srcdoc="&lt;p&gt;in'
           '&lt;/p&gt;&lt;img src=&quot;i.png&quot;&gt;"></iframe><p>after</p></body></html>')
    out = rewrite_html(doc, RW, xml=True)
    assert out == _rewrite_html(doc, RW, xml=True)
    assert out == doc.replace("i.png", f"{MP}http://ex.com/dir/i.png").replace("&gt;", ">")
    ElementTree.fromstring(out)  # well-formed
    assert html(doc).startswith(doc[:doc.index("srcdoc=")] + 'srcdoc="<p>in</p><img')


def test_unclosed_script_runs_to_eof() -> None:
    doc = "<script>document.write('<img src=x.png>')"
    assert html(doc) == doc


def test_comments_doctype_textarea_title_untouched() -> None:
    doc = (
        "<!DOCTYPE html><!-- <a href=x.html> --><!--><a href=1><!---><a href=2>"
        "<title><a href=t></title><textarea><img src=t.png></textarea><?php echo '<a href=p>' ?>"
        "<![CDATA[ x ]]><!-- a --!><a href=3>"
    )
    assert html(doc) == (
        f"<!DOCTYPE html><!-- <a href=x.html> --><!--><a href={NAV}http://ex.com/dir/1>"
        f"<!---><a href={NAV}http://ex.com/dir/2>"
        "<title><a href=t></title><textarea><img src=t.png></textarea><?php echo '<a href=p>' ?>"
        f"<![CDATA[ x ]]><!-- a --!><a href={NAV}http://ex.com/dir/3>"
    )


def test_noscript_contents_rewritten() -> None:
    doc = "<noscript><img src=px.gif></noscript>"
    assert html(doc) == f"<noscript><img src={MP}http://ex.com/dir/px.gif></noscript>"


def test_inline_style_attribute() -> None:
    doc = (
        "<div style=\"background: url('bg.png') no-repeat\">"
        "<p STYLE='background:url(&quot;q.png&quot;)'><span style=color:red>"
    )
    assert html(doc) == (
        f"<div style=\"background: url('{MP}http://ex.com/dir/bg.png') no-repeat\">"
        f"<p STYLE='background:url(\"{MP}http://ex.com/dir/q.png\")'><span style=color:red>"
    )


def test_style_element() -> None:
    doc = "<style media=screen>\n@import 'a.css';\nbody { background: url(b.png) }\n</style><p>"
    assert html(doc) == (
        f"<style media=screen>\n@import '{MP}http://ex.com/dir/a.css';\n"
        f"body {{ background: url({MP}http://ex.com/dir/b.png) }}\n</style><p>"
    )


# --- CSS ------------------------------------------------------------------------------------


def test_css_url_forms() -> None:
    sheet = (
        'a{b:url(x.png)} c{d:url( "y y.png" )} e{f:URL(\'//cdn.org/z.png\')}\n'
        "g{h:url(\n  w.png\n)} i{j:url(data:image/png;base64,AA==)} k{l:url()} m{n:url('#f')}"
    )
    assert css(sheet) == (
        f'a{{b:url({MP}http://ex.com/dir/x.png)}} c{{d:url( "{MP}http://ex.com/dir/y%20y.png" )}} '
        f"e{{f:URL('{MP}http://cdn.org/z.png')}}\n"
        f"g{{h:url(\n  {MP}http://ex.com/dir/w.png\n)}} i{{j:url(data:image/png;base64,AA==)}} "
        "k{l:url()} m{n:url('#f')}"
    )


def test_css_import() -> None:
    sheet = '@import "a.css";\n@import url(b.css) screen;\n@IMPORT\'c.css\';'
    assert css(sheet) == (
        f'@import "{MP}http://ex.com/dir/a.css";\n'
        f"@import url({MP}http://ex.com/dir/b.css) screen;\n"
        f"@IMPORT'{MP}http://ex.com/dir/c.css';"
    )


def test_css_namespace_is_a_name_not_a_resource() -> None:
    """``@namespace`` names a namespace with a URL no browser loads; rewriting it would change
    the namespace, and ``svg|rect`` selectors would match nothing in the archived copy."""
    sheet = ('@namespace svg url(http://www.w3.org/2000/svg);\n@NAMESPACE url("x");'
             '@namespace"y";\nsvg|a { background: url(a.png) }')
    assert css(sheet) == sheet.replace("url(a.png)", f"url({MP}http://ex.com/dir/a.png)")
    from archiver.replay.rewrite import embedded_urls_css

    assert embedded_urls_css(sheet, "http://ex.com/s.css") == ["http://ex.com/a.png"]


def test_css_escapes() -> None:
    assert css(r"a{b:url(a\28 1\29.png)}") == rf"a{{b:url({MP}http://ex.com/dir/a\28 1\29 .png)}}"
    assert css(r'a{b:url("q\"x.png")}') == rf'a{{b:url("{MP}http://ex.com/dir/q\22 x.png")}}'
    assert css(r"a{b:url(\68ttp://o.org/\2e png)}") == rf"a{{b:url({MP}http://o.org/.png)}}"


def test_css_strings_comments_and_bad_urls_untouched() -> None:
    sheet = (
        '/* url(a.png) @import "b.css"; */ q{content:"url(c.png)"} r{content:\'@import "d"\'} '
        "s{b:url(bad url.png)} t{b:myurl(x.png)} u{b:url(\"unterminated\n}"
    )
    assert css(sheet) == sheet


def test_css_image_set() -> None:
    sheet = "a{b:-webkit-image-set('x.png' 1x, url(y.png) 2x, \"z.avif\" type('image/avif'))}"
    assert css(sheet) == (
        f"a{{b:-webkit-image-set('{MP}http://ex.com/dir/x.png' 1x, "
        f"url({MP}http://ex.com/dir/y.png) 2x, "
        f"\"{MP}http://ex.com/dir/z.avif\" type('image/avif'))}}"
    )


# --- byte preservation ----------------------------------------------------------------------

NO_URL_PAGE = """<!DOCTYPE html>
<HTML lang=en><head><meta charset="utf-8"><title>Nothing &amp; nobody</title>
<style>body { color: #333 } /* url-less */</style>
<script>if (a < b && c > d) { x = '<a href="y">'; }</script></head>
<body class="x"   id='y' data-z=w hidden>
<p>Caf&eacute; &lt;tag&gt; &#169; &copy; stray < and > and & here</p>
<div STYLE="color: red;  margin:0"><br/><br /><img alt="no src">
<a name=anchor>anchor</a><a href="#local">local</a><input type=text value='<a href=x>'>
<!-- comment with <img src=x> -->
</body></HTML>
"""


def test_document_without_urls_identical() -> None:
    out = html(NO_URL_PAGE)
    assert out == NO_URL_PAGE


REALISTIC_PAGE = """<!doctype html>
<html><head>
  <meta charset="utf-8">
  <title>Post</title>
  <link rel="stylesheet" href="https://ex.com/css/site.css?v=3&amp;x=1">
  <link rel=icon href=https://ex.com/favicon.ico>
  <style>
    @import url("https://fonts.example.org/css?family=X");
    .hero { background-image: url('https://ex.com/img/hero.jpg'); color: #fff }
  </style>
  <script async src="https://cdn.example.org/lib.js"></script>
  <script>window.cfg = {"api": "https://api.ex.com/v1", "img": "<img src=x>"};</script>
</head>
<body background='https://ex.com/bg.gif'>
  <nav><a href="https://ex.com/">Home</a> | <A HREF='https://ex.com/about'>About</A></nav>
  <!-- <a href="https://ex.com/old">old</a> -->
  <article>
    <img src="https://ex.com/a.jpg" srcset="https://ex.com/a.jpg 1x, https://ex.com/a@2x.jpg 2x"
         alt="An &quot;image&quot; &gt; words" width=600>
    <p>See <a href="https://other.org/paper.pdf#page=2" title='a > b'>the paper</a>,
       <a href="mailto:me@ex.com">mail</a> and <a href="javascript:void(0)">js</a>.</p>
    <div style="background:url(https://ex.com/tile.png)">tile</div>
    <video src=https://ex.com/v.mp4 poster="https://ex.com/p.jpg" controls></video>
    <form action="https://ex.com/search" method=get><input name=q></form>
    <textarea><a href="https://ex.com/raw">raw</a></textarea>
  </article>
</body></html>
"""


def test_realistic_page_only_url_substrings_change() -> None:
    out = html(REALISTIC_PAGE)
    assert out != REALISTIC_PAGE
    assert ARCHIVE_PREFIX.sub("", out) == REALISTIC_PAGE
    # what must and must not have been touched
    assert f'href="{MP}https://ex.com/css/site.css?v=3&amp;x=1"' in out
    assert f"<A HREF='{NAV}https://ex.com/about'>" in out
    assert '"api": "https://api.ex.com/v1"' in out
    assert '<!-- <a href="https://ex.com/old">old</a> -->' in out
    assert '<textarea><a href="https://ex.com/raw">raw</a></textarea>' in out
    assert out.count(MP) == 12
    assert out.count(NAV) == 4


def test_latin1_page_round_trips() -> None:
    raw = (
        b'<html><head><meta charset="iso-8859-1"></head><body><p>Caf\xe9 \xa9 \xff</p>'
        b'<a href="/caf\xe9.html">\xe9</a><img src="\xe9t\xe9.png"></body></html>'
    )
    text = raw.decode("latin-1")
    out = html(text).encode("latin-1")
    assert out == (
        b'<html><head><meta charset="iso-8859-1"></head><body><p>Caf\xe9 \xa9 \xff</p>'
        b'<a href="/web/20240102030405/http://ex.com/caf\xe9.html">\xe9</a>'
        b'<img src="/web/20240102030405mp_/http://ex.com/dir/\xe9t\xe9.png"></body></html>'
    )


# --- properties -----------------------------------------------------------------------------

# Characters that make up markup, attribute syntax, CSS and URLs, so random text hits the
# tokenizer's interesting paths far more often than arbitrary unicode would.
MARKUP_ALPHABET = st.sampled_from([
    *"<>/!?-=\"' \t\n&#;:()\\,.@*{}aAbcehilmprstuxy0129é",
    "<a ", "<img ", "<base ", "<link ", "<meta ", "<style>", "</style>", "<script>",
    "</script>", "<!--", "-->", "href=", "src=", "srcset=", "style=", "content=",
    "http-equiv=refresh", "integrity=", "url(", "@import ", "image-set(", "http://h/",
    "//h/", "&amp;", "&#x3a;", "\\3a ",
])
markup_text = st.lists(MARKUP_ALPHABET, max_size=60).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), markup_text))
def test_never_raises(text: str) -> None:
    for rewriter in (RW, UrlRewriter("", TS), UrlRewriter("http://[::1", TS)):
        assert isinstance(_rewrite_html(text, rewriter), str)
        assert isinstance(_rewrite_css(text, rewriter), str)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=200), markup_text))
def test_text_without_tags_is_unchanged(text: str) -> None:
    text = text.replace("<", "")
    assert _rewrite_html(text, RW) == text


NO_URL_RW = UrlRewriter("about:blank", TS)


@settings(max_examples=300, deadline=None)
@given(markup_text)
def test_identity_when_nothing_can_resolve_to_http(text: str) -> None:
    # Against an about:blank base no relative reference becomes http(s); with no ":" (nor an
    # entity or CSS escape that could decode to one) nothing is absolute either, and without
    # "integrity" nothing is dropped -- so whatever the tokenizer makes of the text, no
    # character of it may change.
    for bad in (":", "&", "\\", "integrity"):
        text = text.replace(bad, "")
    assert _rewrite_html(text, NO_URL_RW) == text
    assert _rewrite_css(text, NO_URL_RW) == text


ABS_URLS = ["http://h.org/a.png", "https://h.org/p?q=1#f", "http://h.org/a,b.png"]
TEXT = st.text(alphabet="ab <>=\"'/\n", max_size=8).map(lambda s: s.replace("<", "&lt;"))


@st.composite
def tag_soup(draw: st.DrawFn) -> str:
    parts: list[str] = []
    for _ in range(draw(st.integers(0, 8))):
        url = draw(st.sampled_from(ABS_URLS))
        quote = draw(st.sampled_from(['"', "'", ""]))
        if quote == "" and "#" in url:
            quote = '"'
        tag, attr = draw(st.sampled_from([
            ("a", "href"), ("IMG", "SRC"), ("img", "srcset"), ("link", "href"),
            ("div", "style"), ("form", "action"), ("video", "poster"),
        ]))
        value = f"background:url({url})" if attr == "style" else url
        if attr == "srcset":
            value = f"{url} 1x, {url} 2x"
            quote = quote or '"'
        extra = draw(st.sampled_from(["", " hidden", " title='x > y'", ' data-u="http://no/"']))
        parts.append(f"<{tag}{extra} {attr}={quote}{value}{quote}>{draw(TEXT)}")
        kind = draw(st.sampled_from(["", "comment", "script", "style"]))
        if kind == "comment":
            parts.append(f"<!-- <a href={url}> -->")
        elif kind == "script":
            parts.append(f"<script>x = '<img src={url}>'</script>")
        elif kind == "style":
            parts.append(f"<style>p {{ background: url('{url}') }}</style>")
    return "".join(parts)


@settings(max_examples=200, deadline=None)
@given(tag_soup())
def test_removing_archive_prefix_restores_document(doc: str) -> None:
    out = _rewrite_html(doc, RW)
    assert ARCHIVE_PREFIX.sub("", out) == doc
    assert out.count('"http://no/"') == doc.count('"http://no/"')  # data-* is not a URL
