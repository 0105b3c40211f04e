"""``archiver demo``: archive the fixture blog end to end in a fresh data folder."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from archiver.archive import Archive, initialise
from archiver.demo.sites import start_demo_web
from archiver.discover import add_source, discover
from archiver.jobs import WorkKind, check_round, run_due
from archiver.report import link_rows, links_query, render_table
from archiver.settings import Settings


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
        say(f"demo data folder: {data_dir}")
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
