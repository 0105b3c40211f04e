"""Addresses written as plain text are references (Markdown, WordPress and plain HTML posts)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from archiver import discover as discover_module
from archiver.archive import Archive
from archiver.discover import add_source, discover
from archiver.extract import extract_links
from archiver.models import Citation, Post

PAGE = "https://blog.example.com/2024/01/post.html"


def test_bare_addresses_in_text_are_references_with_their_sentence() -> None:
    html = """<p>The film's article, https://en.wikipedia.org/wiki/The_Soviet_Story_(film), is
    gone. The trailer was at www.youtube.com/watch?v=abc123.</p>
    <p>(See https://www.economist.com/blogs/easternapproaches/2008/05/x!)</p>"""
    links = extract_links(html, PAGE)
    assert [(link.element, link.url) for link in links] == [
        ("text", "https://en.wikipedia.org/wiki/The_Soviet_Story_(film)"),
        ("text", "http://www.youtube.com/watch?v=abc123"),
        ("text", "https://www.economist.com/blogs/easternapproaches/2008/05/x"),
    ]
    assert links[0].context == ("The film's article, "
                                "https://en.wikipedia.org/wiki/The_Soviet_Story_(film), is gone.")
    assert links[1].context == "The trailer was at www.youtube.com/watch?v=abc123."
    assert links[0].anchor_text is None


def test_code_links_own_site_and_non_links_in_text_are_not_references() -> None:
    html = """<pre>curl https://api.example.org/v1/items</pre>
    <p>Run <code>wget https://code.example.org/file</code> or <kbd>https://kbd.example.org</kbd>.
    Mail me: mailto:me@example.org. Built on ASP.NET and node.js, see example.com.
    Our archive: https://blog.example.com/archive/ and // a comment.</p>
    <script>var u = "https://script.example.org/x";</script>"""
    assert extract_links(html, PAGE) == []


def test_an_address_already_cited_by_an_element_is_not_listed_again() -> None:
    html = """<p>Text first: https://dup.example.org/a, then
    <a href="https://dup.example.org/a">https://dup.example.org/a</a>.</p>
    <p>https://twice.example.org/ and https://twice.example.org/ again.</p>"""
    links = extract_links(html, PAGE)
    assert [(link.element, link.url) for link in links] == [
        ("a", "https://dup.example.org/a"), ("text", "https://twice.example.org/")]


def test_references_keep_document_order_across_elements_and_text() -> None:
    html = """<p>https://first.example.org/ then <a href="https://second.example.org/">b</a>
    then https://third.example.org/</p><iframe src="https://fourth.example.org/e"></iframe>
    <p>https://fifth.example.org/</p>"""
    assert [link.url for link in extract_links(html, PAGE)] == [
        "https://first.example.org/", "https://second.example.org/",
        "https://third.example.org/", "https://fourth.example.org/e",
        "https://fifth.example.org/"]


def test_a_bare_address_that_is_not_a_usable_url_gets_a_verdict() -> None:
    [link] = extract_links("<p>Files at ftp://files.example.org/a.txt today.</p>", PAGE)
    assert (link.element, link.url, link.verdict) == ("text", None, "unsupported_scheme")


def _markdown_post(folder: Path, body: str) -> None:
    (folder / "post.md").write_text(
        "---\ntitle: Soviet Story\nurl: https://blog.example.com/2008/soviet-story/\n---\n"
        + body, encoding="utf-8")


def _cited(archive: Archive) -> list[tuple[str, str]]:
    with archive.db.session() as session:
        rows = session.execute(select(Citation.element, Citation.href).join(Post)
                               .order_by(Citation.id)).all()
    return [(element, href) for element, href in rows]


def test_markdown_bare_urls_and_footnotes_are_cited(tmp_path: Path, archive: Archive) -> None:
    posts = tmp_path / "posts"
    posts.mkdir()
    _markdown_post(posts, """The film is described at https://en.wikipedia.org/wiki/The_Soviet_Story.
The trailer[^1] and [a review](https://review.example.org/r).

```
curl https://example.org/not-a-citation
```

[^1]: www.youtube.com/watch?v=trailer, posted in 2008.
""")
    add_source(archive, str(posts))
    discover(archive)
    assert _cited(archive) == [
        ("text", "https://en.wikipedia.org/wiki/The_Soviet_Story"),
        ("a", "https://review.example.org/r"),
        ("text", "http://www.youtube.com/watch?v=trailer"),
    ]


def test_posts_read_under_older_rules_are_read_again_once(
        tmp_path: Path, archive: Archive, monkeypatch: pytest.MonkeyPatch) -> None:
    posts = tmp_path / "posts"
    posts.mkdir()
    _markdown_post(posts, "Cited: https://old-rules.example.org/x and "
                          "[linked](https://linked.example.org/).\n")
    add_source(archive, str(posts))
    # As stored by a version whose rules found only the Markdown link.
    monkeypatch.setattr(discover_module, "EXTRACTION_RULES", 1)
    monkeypatch.setattr(discover_module, "extract_links",
                        lambda html, url, site=None: [
                            link for link in extract_links(html, url, site)
                            if link.element != "text"])
    discover(archive)
    assert _cited(archive) == [("a", "https://linked.example.org/")]
    monkeypatch.undo()
    summary = discover(archive)
    assert (summary.posts_changed, summary.posts_reread) == (0, 1)
    assert "1 read again under new extraction rules" in summary.line()
    assert _cited(archive) == [("text", "https://old-rules.example.org/x"),
                               ("a", "https://linked.example.org/")]
    assert discover(archive).posts_changed == 0  # once, not at every run


def test_typographic_closing_punctuation_ends_a_bare_address() -> None:
    """WordPress feeds are texturized: the author's "https://x/a" and "see https://x/b..."
    arrive with curly quotes and an ellipsis character.  They end the address as their ASCII
    forms do (``_TRAILING``); taken into it they make a URL that does not exist, which is then
    checked, found 404 and reported dead."""
    html = ("<p>He called it &#8220;https://example.org/page&#8221; in 2008, and also "
            "&#8216;https://example.org/single&#8217;. More at https://example.org/more&#8230; "
            "or &#171;https://example.org/fr&#187;.</p>")
    assert [link.url for link in extract_links(html, PAGE)] == [
        "https://example.org/page", "https://example.org/single", "https://example.org/more",
        "https://example.org/fr"]
