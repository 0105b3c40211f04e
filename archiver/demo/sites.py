"""The demo's fixture web: a blog from 2008 and the sites its references live on.

The post about the documentary "The Soviet Story" cites four references, as such a post would:
the film's encyclopedia article (alive), its trailer (alive), a post on a newspaper's blog
(removed: the site now sends it to its home page) and the film's own page (moved, 301).
All texts are written for this fixture.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from html import escape

from werkzeug.wrappers import Request, Response

from archiver.demo.fixtureweb import Site

STYLE = "body{font-family:Georgia,serif;max-width:40rem;margin:2rem auto;color:#222}" \
        "h1{font-size:1.8rem}.lead{font-size:1.1rem;color:#444}"
# A 1x1 red PNG, so archived pages have an image to carry.
PIXEL_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63f8cfc0f01f0005000201e0a7d5b50000000049454e44ae426082")


@dataclass
class DemoWeb:
    """The running fixture sites and the URLs the demo cares about."""

    blog: Site
    encyclopedia: Site
    video: Site
    newspaper: Site
    film: Site

    @property
    def sites(self) -> list[Site]:
        """Every site, for starting and stopping."""
        return [self.blog, self.encyclopedia, self.video, self.newspaper, self.film]

    @property
    def feed_url(self) -> str:
        """The blog's RSS feed."""
        return self.blog.url("/feed.xml")

    def stop(self) -> None:
        """Stop every site."""
        for site in self.sites:
            site.stop()


def _page(title: str, body: str, extra_head: str = "") -> str:
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><link rel=\"stylesheet\" href=\"/style.css\">"
            f"{extra_head}</head><body>{body}</body></html>")


def _build_encyclopedia(site: Site) -> None:
    site.page("/style.css", STYLE, content_type="text/css")
    site.page("/static/poster.png", PIXEL_PNG, content_type="image/png")
    site.page("/wiki/The_Soviet_Story", _page("The Soviet Story - Encyclopedia", """
<h1>The Soviet Story</h1>
<p class="lead"><b>The Soviet Story</b> is a 2008 documentary film written and directed by
Edvīns Šnore, about the crimes of the Soviet regime and its cooperation with Nazi Germany
before 1941.</p>
<img src="/static/poster.png" alt="Poster" width="120" height="160">
<h2>Content</h2>
<p>The film draws on archive footage, documents and interviews with historians and former
members of parliaments. Its premiere was held in the European Parliament in April 2008.</p>
<h2>Reception</h2>
<p>Reviews were divided along the lines of the debate about the memory of the Second World
War in Eastern Europe.</p>
<p><a href="/wiki/Documentary_film">Documentary film</a></p>"""))
    site.page("/wiki/Baltic_states", _page("Baltic states - Encyclopedia", """
<h1>Baltic states</h1>
<p>The Baltic states are Estonia, Latvia and Lithuania, on the eastern shore of the
Baltic Sea.</p>"""))


def _build_video(site: Site) -> None:
    trailer = _page("The Soviet Story (2008) - official trailer", """
<h1>The Soviet Story (2008) — official trailer</h1>
<video controls width="480" poster="/thumb.png"><source src="/media/trailer.webm"
type="video/webm"></video>
<p>Uploaded 12 May 2008. 3:07.</p>""")
    # Like real video sites, an unknown or removed video is a 200 "unavailable" page.
    unavailable = _page("Video unavailable", "<h1>Video unavailable</h1>"
                        "<p>This video is not available.</p>")

    def watch(request: Request) -> Response:
        known = request.args.get("v") == "soviet-story-trailer"
        return Response(trailer if known else unavailable, content_type="text/html")

    site.route("/watch", watch)
    site.page("/thumb.png", PIXEL_PNG, content_type="image/png")


def _build_newspaper(site: Site) -> None:
    site.page("/", _page("The Weekly Review", """
<h1>The Weekly Review</h1><p>Today's front page: markets, politics and culture.</p>"""))
    # The blog post was removed in a redesign: the site now sends its old address home.
    site.redirect("/blogs/easternapproaches/2008/06/the_soviet_story", "/", status=302)


def _build_film(site: Site) -> None:
    site.page("/films/the-soviet-story/", _page("The Soviet Story - official site", """
<h1>The Soviet Story</h1><p>A film by Edvīns Šnore. 85 minutes. Available on DVD.</p>"""))
    site.redirect("/the-soviet-story.html", "/films/the-soviet-story/", status=301)


def _posts(web: DemoWeb) -> list[dict[str, str]]:
    encyclopedia, video = web.encyclopedia, web.video
    return [{
        "path": "/2008/06/the-soviet-story/",
        "title": "The Soviet Story",
        "date": "2008-06-14T18:30:00",
        "html": f"""
<p>Last night I finally saw <a href="{encyclopedia.url('/wiki/The_Soviet_Story')}">The Soviet
Story</a>, Edvīns Šnore's documentary about the Soviet regime and its pact with Nazi Germany.
You can watch <a href="{video.url('/watch?v=soviet-story-trailer')}">the trailer</a> before
deciding whether to find a copy.</p>
<p>Edward Lucas <a href="{web.newspaper.url('/blogs/easternapproaches/2008/06/the_soviet_story')}">
wrote about the film on his blog</a> after its screening in Brussels, and the
<a href="{web.film.url('/the-soviet-story.html')}">film's own site</a> lists the screenings
planned for the autumn.</p>
<p>More on the <a href="/2008/05/reading-list/">reading list</a> I posted last month.</p>""",
    }, {
        "path": "/2009/01/a-year-of-baltic-reading/",
        "title": "A year of Baltic reading",
        "date": "2009-01-04T10:00:00",
        "html": f"""
<p>A short guide to the <a href="{encyclopedia.url('/wiki/Baltic_states')}">Baltic
states</a> for newcomers, and an
<a href="{web.newspaper.url('/2008/11/interview-with-the-director')}">interview with the
director</a> that I recommended in November.</p>""",
    }]


def _build_blog(web: DemoWeb) -> None:
    site = web.blog
    posts = _posts(web)
    items = []
    for post in posts:
        url = site.url(post["path"])
        published = datetime.fromisoformat(post["date"]).replace(tzinfo=UTC)
        site.page(post["path"], _page(post["title"], f"<article><h1>{escape(post['title'])}"
                                      f"</h1>{post['html']}</article>"))
        items.append(f"<item><title>{escape(post['title'])}</title><link>{url}</link>"
                     f"<guid>{url}</guid><pubDate>{format_datetime(published)}</pubDate>"
                     f"<description>{escape(post['html'])}</description></item>")
    site.page("/feed.xml", "<?xml version=\"1.0\" encoding=\"utf-8\"?><rss version=\"2.0\">"
              "<channel><title>Notes from the Baltic</title>"
              f"<link>{site.url('/')}</link><description>A reader's notes</description>"
              + "".join(items) + "</channel></rss>",
              content_type="application/rss+xml; charset=utf-8")
    site.page("/", _page("Notes from the Baltic", "<h1>Notes from the Baltic</h1>"))


def start_demo_web() -> DemoWeb:
    """Start the fixture sites on loopback and fill them with pages."""
    web = DemoWeb(blog=Site("blog"), encyclopedia=Site("encyclopedia"), video=Site("video"),
                  newspaper=Site("newspaper"), film=Site("film"))
    for site in web.sites:
        site.start()
    _build_encyclopedia(web.encyclopedia)
    _build_video(web.video)
    _build_newspaper(web.newspaper)
    _build_film(web.film)
    _build_blog(web)
    return web
