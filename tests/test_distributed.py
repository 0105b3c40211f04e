"""Distributed work: the scheduler's tick hands host batches to two real `archiver worker`
processes (Celery on a real redis-server, a real PostgreSQL database); one worker is killed
with SIGKILL mid-run.  Every link must be captured and checked exactly once, and no fixture
host may ever see more requests at once than fetch.per_host_concurrency, across both workers.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from archiver.archive import Archive, initialise
from archiver.clock import utcnow
from archiver.demo.fixtureweb import Site
from archiver.jobs import WorkKind
from archiver.models import Capture, Check, Link
from archiver.queue import TASK_NAME, dispatch_due, marker_key, release_marker
from archiver.scheduler import tick
from archiver.settings import Settings
from archiver.tasks import run_host_batch
from archiver.urls import host_of, url_key
from archiver.warc.verify import verify
from tests.conftest import make_settings
from tests.pg import fresh_pg_url, pg_server  # noqa: F401
from tests.redis_server import redis_server, redis_url  # noqa: F401
from tests.test_crash import child_env

HOSTS = 4
PAGES = 15
DELAY = 0.05  # seconds every answer takes
PER_HOST = 2
LEASE = "3s"
DEADLINE_S = 90
PAGE_TYPES = ("response", "revisit")


class Stall:
    """Once on, holds w1's requests for page requisites (only a capture fetches them) until
    released: the test kills w1 while one is held, so w1 surely dies in the middle of a
    capture, not just after one (a race the test lost on a loaded machine)."""

    def __init__(self) -> None:
        self.on = threading.Event()
        self.release = threading.Event()
        self.held = 0  # requests held now
        self._lock = threading.Lock()

    def hold(self, agent: str, path: str) -> None:
        """Wait until released if this request is one to hold."""
        if not (self.on.is_set() and agent.endswith("w1") and path.startswith("/s/")):
            return
        with self._lock:
            self.held += 1
        try:
            self.release.wait(DEADLINE_S)
        finally:
            with self._lock:
                self.held -= 1


class CountingSite(Site):
    """A fixture site that answers slowly and records requests in flight and who sent them."""

    def __init__(self, name: str, stall: Stall) -> None:
        super().__init__(name)
        self.stall = stall
        self.in_flight = 0
        self.max_in_flight = 0
        self.log: list[tuple[float, str, str, str]] = []  # (time, agent, method, path)
        self._count_lock = threading.Lock()

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        agent, path = environ.get("HTTP_USER_AGENT", ""), environ.get("PATH_INFO", "")
        with self._count_lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.log.append((time.monotonic(), agent, environ["REQUEST_METHOD"], path))
        try:
            self.stall.hold(agent, path)
            time.sleep(DELAY)
            return super()._app(environ, start_response)
        finally:
            with self._count_lock:
                self.in_flight -= 1


@pytest.fixture
def stall() -> Stall:
    return Stall()


@pytest.fixture
def web(stall: Stall) -> Iterator[list[CountingSite]]:
    sites = [CountingSite(f"host{n}", stall) for n in range(HOSTS)]
    for site in sites:
        for page in range(PAGES):
            site.page(f"/p/{page}.html",
                      f"<html><head><link rel=stylesheet href=/s/{page}.css></head><body>"
                      f"<h1>{site.name} page {page}</h1><p>{'words ' * 50}{page}</p>"
                      f"</body></html>")
            site.page(f"/s/{page}.css", f"h1{{color:#{page:06x}}}", content_type="text/css")
        site.start()
    try:
        yield sites
    finally:
        stall.release.set()
        for site in sites:
            site.stop()


def start_worker(tmp_path: Path, env: dict[str, str], name: str,
                 spool: Path | None = None) -> subprocess.Popen[bytes]:
    """An `archiver worker` process that identifies itself by its User-Agent (and, as if on
    a machine of its own, writes in its own WARC folder when ``spool`` is given)."""
    worker_env = {**env, "ARCHIVER_FETCH__USER_AGENT": f"archiver-test {name}"}
    if spool is not None:
        worker_env["ARCHIVER_WARC__DIR"] = str(spool)
    log = (tmp_path / f"{name}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-c", "from archiver.cli import main; main()", "worker",
         "--concurrency", "2"], env=worker_env, stdout=log, stderr=subprocess.STDOUT,
        cwd=tmp_path)


@pytest.mark.parametrize("storage", ["shared folder", "object storage"])
def test_scheduler_and_two_workers_survive_a_kill(
        storage: str, request: pytest.FixtureRequest, tmp_path: Path,
        web: list[CountingSite], stall: Stall, fresh_pg_url: str,  # noqa: F811
        redis_url: str) -> None:  # noqa: F811
    """With object storage each worker writes in a folder of its own (as on machines of
    their own) and the bucket is all they share; the scheduler's archive reads from it."""
    remote: dict[str, str] = {}
    bucket = ""
    if storage == "object storage":
        s3 = request.getfixturevalue("s3")
        bucket = s3.new_bucket()
        remote = s3.settings_for(bucket)
    values = {**remote, "database_url": fresh_pg_url, "queue.backend": "celery",
              "queue.broker_url": redis_url, "queue.host_batch_size": 4,
              "capture.lease": LEASE, "fetch.per_host_concurrency": PER_HOST,
              "fetch.concurrency": 8, "capture.respect_robots": False,
              "log_level": "WARNING"}
    settings = make_settings(tmp_path / "data", **values)
    initialise(settings)
    env = child_env()
    env.update({"ARCHIVER_" + name.upper(): value for name, value in remote.items()})
    env.update({
        "ARCHIVER_DATA_DIR": str(settings.data_dir), "ARCHIVER_DATABASE_URL": fresh_pg_url,
        "ARCHIVER_QUEUE__BACKEND": "celery", "ARCHIVER_QUEUE__BROKER_URL": redis_url,
        "ARCHIVER_CAPTURE__LEASE": LEASE, "ARCHIVER_FETCH__PER_HOST_CONCURRENCY": str(PER_HOST),
        "ARCHIVER_FETCH__ALLOW_PRIVATE_NETWORKS": "true", "ARCHIVER_FETCH__PER_HOST_DELAY": "0s",
        "ARCHIVER_FETCH__TIMEOUT": "5s", "ARCHIVER_CAPTURE__RESPECT_ROBOTS": "false",
        "ARCHIVER_HEALTH__RETRY_BACKOFF": "0s", "ARCHIVER_LOG_LEVEL": "INFO",
    })
    urls = [site.url(f"/p/{page}.html") for site in web for page in range(PAGES)]
    spools = {name: tmp_path / f"spool-{name}" if remote else None for name in ("w1", "w2")}
    workers = {name: start_worker(tmp_path, env, name, spools[name]) for name in spools}
    started = time.monotonic()
    try:
        with Archive.open(settings) as archive:
            now = utcnow()
            with archive.db.session() as session:
                session.add_all(Link(url=u, url_key=url_key(u), host=host_of(u),
                                     next_capture_at=now, next_check_at=now) for u in urls)

            def captured() -> set[str]:
                with archive.db.session() as session:
                    return set(session.scalars(select(Capture.url).where(
                        Capture.record_type.in_(PAGE_TYPES), Capture.url.in_(urls))))

            def pages_fetched_by(agent: str, after: float = 0.0) -> set[str]:
                return {site.url(path) for site in web
                        for at, who, method, path in list(site.log)
                        if who.endswith(agent) and method == "GET" and at >= after
                        and path.startswith("/p/")}

            def killed_batch_links() -> set[str]:
                """Links leased for capture to a batch w1 was working on, not yet captured."""
                with archive.db.session() as session:
                    leased = {url: owner for url, owner in session.execute(
                        select(Link.url, Link.capture_lease_owner)
                        .where(Link.capture_lease_owner.is_not(None))).all()}
                done = captured()
                owners = {leased[u] for u in pages_fetched_by("w1") if u in leased
                          and u not in done}
                return {u for u, owner in leased.items() if owner in owners and u not in done}

            # Once w1 has done some work, hold its next capture in the middle (on a requisite)
            # and kill it there; then let the held request go, so the dead worker's
            # connection no longer counts as one in flight on its host.
            while not (stall.held and killed_batch_links()):
                assert time.monotonic() - started < DEADLINE_S, "w1 never got a capture batch"
                assert len(captured()) < len(urls), "all done before the kill could land"
                if pages_fetched_by("w1"):
                    stall.on.set()
                tick(archive)
                time.sleep(0.1)
            workers["w1"].send_signal(signal.SIGKILL)
            workers["w1"].wait(timeout=10)
            stall.release.set()
            killed_at = time.monotonic()
            lost = killed_batch_links()  # what the dead worker had in hand, unfinished
            assert lost, f"w1's held capture is not among its leased links: {stall.held} held"

            def finished() -> bool:
                with archive.db.session() as session:
                    checked = session.scalar(select(func.count(func.distinct(Check.link_id))))
                return len(captured()) == len(urls) and checked == len(urls)

            while not finished():
                assert time.monotonic() - started < DEADLINE_S, "work was lost"
                assert workers["w2"].poll() is None, "the surviving worker died"
                tick(archive)
                time.sleep(0.2)

            with archive.db.session() as session:
                captures = dict(session.execute(
                    select(Capture.url, func.count(Capture.id))
                    .where(Capture.record_type.in_(PAGE_TYPES), Capture.url.in_(urls))
                    .group_by(Capture.url)).all())
                checks = dict(session.execute(
                    select(Link.url, func.count(Check.id)).join(Check, Check.link_id == Link.id)
                    .group_by(Link.url)).all())
                leftover = session.scalar(select(func.count(Link.id)).where(
                    Link.capture_lease_owner.is_not(None)))
    finally:
        for process in workers.values():
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    assert captures == dict.fromkeys(urls, 1)  # each due run captured exactly once
    assert checks == dict.fromkeys(urls, 1)  # and checked exactly once
    assert leftover == 0
    busiest = {site.name: site.max_in_flight for site in web}
    assert all(0 < most <= PER_HOST for most in busiest.values()), busiest
    assert lost <= pages_fetched_by("w2", after=killed_at)  # the survivor did the dead's work
    assert not any(markers_left(redis_url, web))
    assert time.monotonic() - started < DEADLINE_S
    if remote:
        everything_reaches_the_bucket(settings, env, tmp_path, spools)


def everything_reaches_the_bucket(settings: Settings, env: dict[str, str], tmp_path: Path,
                                  spools: dict[str, Path | None]) -> None:
    """The killed worker's file reaches the bucket when a worker starts again on its machine
    (repaired, then uploaded); then every index row reads back from the bucket alone."""
    folder = spools["w1"]
    assert folder is not None

    def left_in(spool: Path | None) -> list[str]:
        return sorted(p.name for p in spool.glob("*.warc*")) if spool else []

    assert left_in(spools["w2"]) == []  # a clean stop uploads everything
    # The killed worker left its file (and .open marker) unless no record of its last batch
    # was written yet: the previous batch's file was closed, and so uploaded, when it ended.
    restarted = start_worker(tmp_path, env, "w1", folder)
    try:
        deadline = time.monotonic() + 60
        while left_in(folder):
            assert time.monotonic() < deadline, f"never uploaded: {left_in(folder)}"
            assert restarted.poll() is None, "the restarted worker died"
            time.sleep(0.2)
    finally:
        restarted.terminate()
        restarted.wait(timeout=15)
    with Archive.open(settings) as archive:  # the scheduler's own folder holds nothing
        assert archive.store.local_files() == []
        assert archive.store.files()
        assert verify(archive) == []


def markers_left(url: str, web: list[CountingSite]) -> list[str]:
    """Host batch markers still in Redis (none once every batch has finished)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        return [site.name for site in web
                if client.exists(marker_key(host_of(site.base_url)))]
    finally:
        client.close()



class FakeSender:
    """Records the tasks dispatch_due sends."""

    def __init__(self) -> None:
        self.sent: list[list[Any]] = []

    def send_task(self, name: str, args: Any = None, **options: Any) -> None:
        assert name == TASK_NAME
        self.sent.append(list(args))


@pytest.fixture
def small_archive(tmp_path: Path, redis_url: str) -> Iterator[Archive]:  # noqa: F811
    settings = make_settings(tmp_path / "data", queue__backend="celery",
                             queue__broker_url=redis_url, queue__host_batch_size=3,
                             capture__respect_robots=False)
    initialise(settings)
    with Archive.open(settings) as archive:
        yield archive


def add_links(archive: Archive, urls: list[str]) -> None:
    now = utcnow()
    with archive.db.session() as session:
        session.add_all(Link(url=u, url_key=url_key(u), host=host_of(u), next_capture_at=now,
                             next_check_at=now) for u in urls)


def test_one_batch_per_host_until_it_is_done(small_archive: Archive) -> None:
    import redis

    urls = [f"http://{host}.example/{n}" for host in ("a", "b") for n in range(5)]
    add_links(small_archive, urls)
    sender = FakeSender()
    client = redis.Redis.from_url(small_archive.settings["queue.broker_url"])
    try:
        first = dispatch_due(small_archive, WorkKind.CAPTURE, sender, client)
        assert (first.batches, first.links) == (2, 6)  # one batch per host, 3 links each
        assert sorted(args[1] for args in sender.sent) == ["a.example", "b.example"]
        # Both hosts are busy: neither more captures nor any checks go out.
        for kind in (WorkKind.CAPTURE, WorkKind.CHECK):
            again = dispatch_due(small_archive, kind, sender, client)
            assert again.batches == 0 and sorted(again.busy_hosts) == ["a.example",
                                                                         "b.example"]
        kind, host, ids, owner = sender.sent[0]
        assert release_marker(client, host, owner)
        later = dispatch_due(small_archive, WorkKind.CAPTURE, sender, client)
        assert later.batches == 1 and sender.sent[-1][1] == host
        assert not set(sender.sent[-1][2]) & set(ids)  # the leased links were not sent twice
    finally:
        client.close()


def test_a_batch_whose_claim_was_taken_over_does_nothing(small_archive: Archive,
                                                         site: Site) -> None:
    site.page("/page", "<html><body>hello</body></html>")
    add_links(small_archive, [site.url("/page")])
    sender = FakeSender()
    dispatch_due(small_archive, WorkKind.CAPTURE, sender)
    kind, host, ids, owner = sender.sent[0]
    # The lease lapsed and another batch took the link: the old task must not capture it.
    with small_archive.db.session() as session:
        link = session.get(Link, ids[0])
        assert link is not None
        link.capture_lease_owner = "someone-else"
    assert run_host_batch(small_archive, kind, host, ids, owner) == {"skipped": 1}
    assert site.hits.get("/page") is None
    # The batch that took it over (a token of its own) captures it once.
    assert run_host_batch(small_archive, kind, host, ids, "someone-else") == {"archived": 1}
    assert site.hits["/page"] == 1
