"""Soft-404 probe answers outlive a run: a later `archiver check` (a new process, as a CI gate
runs one per build) reuses a site's answer for `health.probe_cache` instead of asking again."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

from sqlalchemy import func, select
from werkzeug.wrappers import Request, Response

from archiver.archive import Archive, initialise
from archiver.demo.fixtureweb import Site
from archiver.jobs import WorkKind, run_due
from archiver.models import Check, Link, SiteProbe
from archiver.settings import Settings
from tests.conftest import make_settings
from tests.test_jobs import add_links


def probes_sent(site: Site) -> int:
    """Requests the site had for random sibling URLs (probe_url's "zz" token, or its random
    number, eight digits or more, in place of a number)."""
    return sum(count for path, count in site.hits.items()
               if re.fullmatch(r"zz.*|9\d{7,}", path.rpartition("/")[2]))


def check_in_a_new_process(settings: Settings, urls: list[str]) -> list[str]:
    """Open the archive afresh (nothing cached in memory), check ``urls`` (and any link it
    holds); the verdicts of the last ``len(urls)`` checks."""
    with Archive.open(settings) as archive:
        with archive.db.session() as session:
            known = set(session.scalars(select(Link.url)))
        add_links(archive, [url for url in urls if url not in known])
        run_due(archive, WorkKind.CHECK, everything=True)
        with archive.db.session() as session:
            return list(session.scalars(select(Check.verdict).order_by(Check.id.desc())
                                        .limit(len(urls))))


def test_a_later_run_reuses_the_sites_answer(tmp_path: Path, site: Site) -> None:
    site.page("/films/soviet-story", "<p>The documentary's page.</p>")
    site.page("/films/trailer", "<p>The trailer.</p>")
    settings = make_settings(tmp_path / "data")
    initialise(settings)
    assert check_in_a_new_process(settings, [site.url("/films/soviet-story")]) == ["ok"]
    assert probes_sent(site) == 1
    # Same site and parent path, another run: the stored answer (a real 404) is enough.
    assert check_in_a_new_process(settings, [site.url("/films/trailer")]) == ["ok"]
    assert probes_sent(site) == 1
    with Archive.open(settings) as archive, archive.db.session() as session:
        assert session.scalar(select(func.count()).select_from(SiteProbe)) == 1


def test_a_stored_answer_still_finds_a_parked_domain(tmp_path: Path, site: Site) -> None:
    site.fallback = lambda _request: Response("<p>This domain is for sale. Call now.</p>",
                                              content_type="text/html")
    settings = make_settings(tmp_path / "data")
    initialise(settings)
    assert check_in_a_new_process(settings, [site.url("/2008/06/article.html")]) == ["soft_404"]
    assert check_in_a_new_process(settings, [site.url("/2008/06/other.html")]) == ["soft_404"]
    assert probes_sent(site) == 1


def test_an_expired_answer_is_asked_again_and_replaced(tmp_path: Path, site: Site) -> None:
    site.page("/a/1", "<p>one</p>")
    settings = make_settings(tmp_path / "data", health__probe_cache="1s")
    initialise(settings)
    check_in_a_new_process(settings, [site.url("/a/1")])
    time.sleep(1.1)
    check_in_a_new_process(settings, [site.url("/a/1")])
    assert probes_sent(site) == 2
    with Archive.open(settings) as archive, archive.db.session() as session:
        assert session.scalar(select(func.count()).select_from(SiteProbe)) == 1


def test_a_failed_probe_is_not_kept_for_later_runs(tmp_path: Path, site: Site) -> None:
    answers = {"probe": 0}

    def slow_probe(request: Request) -> Response:
        answers["probe"] += 1
        if answers["probe"] == 1:
            time.sleep(1.5)  # past fetch.timeout: the first probe fails
        return Response("no", status=404)

    site.page("/a/1", "<p>one</p>")
    site.fallback = slow_probe
    settings = make_settings(tmp_path / "data", fetch__timeout="1s", health__retries=0)
    initialise(settings)
    assert check_in_a_new_process(settings, [site.url("/a/1")]) == ["ok"]
    with Archive.open(settings) as archive, archive.db.session() as session:
        assert session.scalar(select(func.count()).select_from(SiteProbe)) == 0
    assert check_in_a_new_process(settings, [site.url("/a/1")]) == ["ok"]
    assert probes_sent(site) == 2  # asked again: the site was only slow for a moment


def test_a_runs_first_checks_share_one_probe_cache(archive: Archive) -> None:
    # 40 check threads start at once and each asks for the cache, which reads the database
    # to start: each must get the same one, or every site is probed once per copy.
    start = threading.Barrier(20)
    caches: list[object] = []

    def ask() -> None:
        start.wait()
        caches.append(archive.probes())

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(caches) == 20 and len({id(cache) for cache in caches}) == 1
