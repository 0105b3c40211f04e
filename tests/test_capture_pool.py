"""A large capture run spread over processes split by host: every link captured once, each
process its own WARC file, stops and a dying child handled."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import func, select
from werkzeug.wrappers import Response

from archiver.archive import Archive, initialise
from archiver.capture_pool import LOST, MIN_SHARE, process_count, split_by_host
from archiver.demo.fixtureweb import Site
from archiver.jobs import DueLink, WorkKind, run_due
from archiver.models import Capture, Link
from archiver.settings import Settings
from archiver.warc.verify import verify
from tests.conftest import make_settings
from tests.test_jobs import add_links

HOSTS = 6
PAGES_PER_HOST = 15  # 90 links: two processes of 45 with capture.processes = 2


def _due(urls: list[str]) -> list[DueLink]:
    return [DueLink(n, url, None) for n, url in enumerate(urls)]


def test_shares_keep_hosts_whole_and_even() -> None:
    urls = ([f"https://big.example/{n}" for n in range(50)]
            + [f"https://mid{h}.example/{n}" for h in range(4) for n in range(10)]
            + [f"https://small{h}.example/" for h in range(10)])
    shares = split_by_host(_due(urls), 3)
    assert sorted(len(share) for share in shares) == [25, 25, 50]
    hosts = [{link.url.split("/")[2] for link in share} for share in shares]
    assert sum(len(h) for h in hosts) == len(set().union(*hosts)) == 15  # no host split
    assert split_by_host(_due(["https://one.example/a", "https://one.example/b"]), 4) == [
        _due(["https://one.example/a", "https://one.example/b"])]


def test_processes_are_started_only_for_enough_links(tmp_path: Path) -> None:
    one = make_settings(tmp_path, capture__processes=1)
    four = make_settings(tmp_path, capture__processes=4)
    auto = make_settings(tmp_path, capture__processes=0)
    assert process_count(one, 10_000) == 1
    assert process_count(four, MIN_SHARE * 4) == 4
    assert process_count(four, MIN_SHARE * 2 + 1) == 2
    assert process_count(four, MIN_SHARE - 1) == 1
    assert process_count(auto, 10_000) == min(os.cpu_count() or 1, 4)


@pytest.fixture
def sites() -> Iterator[list[Site]]:
    with ExitStack() as stack:
        yield [stack.enter_context(Site(f"s{n}", host=f"127.0.0.{n + 1}")) for n in range(HOSTS)]


def _pages(sites: list[Site], delay: float = 0.0) -> list[str]:
    urls = []
    for site in sites:
        site.page("/style.css", "body { color: black }", headers={"Content-Type": "text/css"})
        for n in range(PAGES_PER_HOST):
            body = (f'<html><head><link rel="stylesheet" href="/style.css"></head>'
                    f"<body><p>page {n} of {site.host} with some words</p></body></html>")
            if delay:
                site.route(f"/p{n}", lambda _r, body=body: (
                    time.sleep(delay), Response(body, mimetype="text/html"))[1])
            else:
                site.page(f"/p{n}", body)
            urls.append(site.url(f"/p{n}"))
    return urls


def _settings(tmp_path: Path) -> Settings:
    settings = make_settings(tmp_path / "data", capture__processes=2, capture__batch_size=1000)
    initialise(settings)
    return settings


def test_a_large_run_is_captured_by_two_processes(tmp_path: Path, sites: list[Site]) -> None:
    settings = _settings(tmp_path)
    urls = _pages(sites)
    with Archive.open(settings) as archive:
        add_links(archive, urls)
        summary = run_due(archive, WorkKind.CAPTURE)
        assert summary.outcomes == {"archived": len(urls)}
        with archive.db.session() as session:
            pages = set(session.scalars(select(Capture.url).where(Capture.url.in_(urls))))
            files = set(session.scalars(select(Capture.warc_file)))
            leased = session.scalar(select(func.count(Link.id)).where(
                Link.capture_lease_owner.is_not(None)))
        assert pages == set(urls) and leased == 0
        assert len(files) == 2  # each process writes its own WARC file
        assert verify(archive) == []
    for site in sites:  # a host's pages stay in one process: its style sheet fetched once
        assert site.hits["/style.css"] == 1


def test_a_stop_reaches_the_other_processes(tmp_path: Path, sites: list[Site]) -> None:
    settings = _settings(tmp_path)
    urls = _pages(sites, delay=0.2)
    with Archive.open(settings) as archive:
        add_links(archive, urls)
        threading.Timer(1.5, archive.stopping.set).start()
        summary = run_due(archive, WorkKind.CAPTURE)
        assert 0 < summary.outcomes["stopped"] < len(urls)
        assert summary.outcomes["archived"] + summary.outcomes["stopped"] == len(urls)
        with archive.db.session() as session:
            leased = session.scalar(select(func.count(Link.id)).where(
                Link.capture_lease_owner.is_not(None)))
        assert leased == 0  # what was not begun is given back for the next run


def test_a_child_that_dies_has_its_links_given_back(tmp_path: Path, sites: list[Site]) -> None:
    settings = _settings(tmp_path)
    urls = _pages(sites, delay=0.2)

    def kill_a_child() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            children = multiprocessing.active_children()
            if children:
                time.sleep(1.0)  # let it start capturing
                os.kill(children[0].pid or 0, signal.SIGKILL)
                return
            time.sleep(0.05)

    with Archive.open(settings) as archive:
        add_links(archive, urls)
        killer = threading.Thread(target=kill_a_child)
        killer.start()
        summary = run_due(archive, WorkKind.CAPTURE)
        killer.join()
        assert summary.outcomes[LOST] > 0
        assert summary.outcomes["archived"] + summary.outcomes[LOST] == len(urls)
        with archive.db.session() as session:
            leased = session.scalar(select(func.count(Link.id)).where(
                Link.capture_lease_owner.is_not(None)))
        assert leased == 0
        again = run_due(archive, WorkKind.CAPTURE)  # the next run finishes what was lost
        assert again.outcomes["archived"] > 0 and not again.outcomes[LOST]


def _count_in_a_daemon(settings: Settings, answer: multiprocessing.SimpleQueue[int]) -> None:
    answer.put(process_count(settings, 10_000))


def test_a_daemonic_process_captures_alone(tmp_path: Path) -> None:
    """A worker of a process pool may not start children: it keeps its links itself."""
    context = multiprocessing.get_context("spawn")
    answer: multiprocessing.SimpleQueue[int] = context.SimpleQueue()
    daemon = context.Process(target=_count_in_a_daemon, daemon=True,
                             args=(make_settings(tmp_path, capture__processes=4), answer))
    daemon.start()
    daemon.join(60)
    assert answer.get() == 1


def test_a_stop_reaches_the_children_while_this_process_is_still_busy(tmp_path: Path) -> None:
    """This process's own share may hold slow captures for a while after a stop: the children
    must not go on starting links meanwhile."""
    settings = _settings(tmp_path)
    started: list[float] = []
    with ExitStack() as stack:
        slow = stack.enter_context(Site("slow", host="127.0.0.1"))
        fast = [stack.enter_context(Site(f"f{n}", host=f"127.0.0.{n + 2}")) for n in range(5)]
        urls = []
        for n in range(50):  # the largest host: this process's share
            slow.route(f"/p{n}", lambda _r: (time.sleep(1.5), Response("<p>slow</p>",
                                                                      mimetype="text/html"))[1])
            urls.append(slow.url(f"/p{n}"))
        for site in fast:
            for n in range(10):
                site.route(f"/p{n}", lambda _r: (started.append(time.monotonic()),
                                                 time.sleep(0.6),
                                                 Response("<p>fast</p>",
                                                          mimetype="text/html"))[1])
                urls.append(site.url(f"/p{n}"))
        with Archive.open(settings) as archive:
            add_links(archive, urls)
            stop_at: list[float] = []
            threading.Timer(2.0, lambda: (stop_at.append(time.monotonic()),
                                          archive.stopping.set())).start()
            summary = run_due(archive, WorkKind.CAPTURE)
    late = [at for at in started if at > stop_at[0] + 1.0]
    assert late == [], f"{len(late)} links of the other process begun well after the stop"
    assert summary.outcomes["stopped"] > 50  # most of both shares were given back
