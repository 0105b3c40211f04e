"""``archiver demo``: archive the fixture blog end to end in a fresh data folder."""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import select

from archiver.archive import Archive, initialise
from archiver.demo.sites import start_demo_web
from archiver.discover import add_source, discover
from archiver.jobs import WorkKind, check_round, run_due
from archiver.models import Post
from archiver.report import link_rows, links_query, render_table
from archiver.settings import Settings

STORY_TITLE = "The Soviet Story"


def demo_settings(settings: Settings, data_dir: str) -> Settings:
    """The demo's settings: its own data folder, loopback allowed, no politeness delay."""
    return settings.replace(data_dir=data_dir, warc__dir="",
                            fetch__allow_private_networks=True, fetch__per_host_delay="0s",
                            fetch__timeout="10s", health__retry_backoff="0s",
                            database_url="", secret_key="")


@contextmanager
def prepare_demo(settings: Settings, say: Callable[[str], None]) -> Iterator[Archive]:
    """Start the fixture web, archive and check its blog, and yield the open archive."""
    web = start_demo_web()
    data_dir = tempfile.mkdtemp(prefix="archiver-demo-")
    demo = demo_settings(settings, data_dir)
    try:
        initialise(demo)
        say(f"demo data folder: {data_dir} (kept after the demo; delete it when done)")
        say(f"fixture blog: {web.blog.url('/')} (feed {web.feed_url})")
        with Archive.open(demo) as archive:
            add_source(archive, web.feed_url)
            say(discover(archive).line())
            say(run_due(archive, WorkKind.CAPTURE).line())
            say(check_round(archive).line())
            with archive.db.session() as session:
                say(render_table(link_rows(session, list(session.scalars(links_query())))))
            yield archive
    finally:
        web.stop()


# Loggers whose INFO lines (APScheduler's jobs added, run and executed; a line per link
# captured or checked; the scheduler's rounds) buried the line that says what to open.  The
# demo prints its own summaries; warnings and errors still show.
DEMO_QUIET_LOGGERS = ("apscheduler", "archiver.jobs", "archiver.scheduler")


def quiet_demo_logs() -> None:
    """Keep the INFO lines of the scheduler and of each link's work out of the demo's
    console."""
    for name in DEMO_QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def demo_announcer(archive: Archive, say: Callable[[str], None]) -> Callable[[str], None]:
    """What the demo says once it serves: the story's page to open, how to stop, where its
    data is and what to do next, in place of the bare "serving on" line."""
    with archive.db.session() as session:
        post_id = session.scalar(select(Post.id).where(Post.title == STORY_TITLE))
    data_dir = archive.settings["data_dir"]

    def announce(message: str) -> None:
        served = re.match(r"serving on (https?://\S+?)/?(?: |$)", message)
        if served is None or post_id is None:
            say(message)
            return
        say(f"\nopen {served.group(1)}/posts/{post_id} : the 2008 post {STORY_TITLE} and its "
            "references, each with its state and archived copy (Ctrl-C to stop)")
        say(f"the demo's data folder {data_dir} is kept after you stop; delete it when done")
        say('next: archive your own blog, see "Using it on your blog" in README.md')

    return announce
