"""Distributed work under faults, with real `archiver worker` processes, a real redis-server
and a real PostgreSQL database: Redis restarting while a worker is busy, and one batch message
delivered twice (what the Redis transport does to a message not acked within its visibility
timeout)."""

from __future__ import annotations

import subprocess
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
from archiver.models import Capture, Link
from archiver.queue import TASK_NAME, dispatch_due
from archiver.settings import Settings
from archiver.tasks import make_celery, run_host_batch
from archiver.urls import host_of, url_key
from tests.conftest import make_settings
from tests.pg import fresh_pg_url, pg_server  # noqa: F401
from tests.redis_server import RedisServer
from tests.test_crash import child_env
from tests.test_distributed import start_worker

PAGE_TIME = 1.0  # seconds each page takes to answer
DEADLINE_S = 45
PAGE_TYPES = ("response", "revisit")


class RestartableRedis(RedisServer):
    """A redis-server that can be stopped and started again on the same port (its data, as
    with any restart without persistence, is gone)."""

    def restart(self, down_for: float) -> None:
        """Stop the server, wait ``down_for`` seconds, start it again on the same port."""
        self.stop_process()
        time.sleep(down_for)
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder),
             "--logfile", str(self.folder / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not come back"
                time.sleep(0.05)
        client.close()


@pytest.fixture
def own_redis() -> Iterator[RestartableRedis]:
    server = RestartableRedis()
    try:
        server.start()
        yield server
    finally:
        server.stop()


class SlowSite(Site):
    """A site whose pages take PAGE_TIME to answer; counts requests in flight and pages
    fetched (GETs of /p/...)."""

    def __init__(self, name: str, pages: int) -> None:
        super().__init__(name)
        self.in_flight = 0
        self.max_in_flight = 0
        self.page_gets = 0
        self._count_lock = threading.Lock()
        for page in range(pages):
            self.page(f"/p/{page}.html", f"<html><body><h1>{name} {page}</h1></body></html>")

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        with self._count_lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if environ["REQUEST_METHOD"] == "GET" and environ["PATH_INFO"].startswith("/p/"):
                self.page_gets += 1
        try:
            time.sleep(PAGE_TIME)
            return super()._app(environ, start_response)
        finally:
            with self._count_lock:
                self.in_flight -= 1


@pytest.fixture
def sites() -> Iterator[list[SlowSite]]:
    started = [SlowSite(f"slow{n}", 3).start() for n in range(2)]
    try:
        yield started  # type: ignore[misc]
    finally:
        for site in started:
            site.stop()


def setup(tmp_path: Path, pg_url: str, broker: str) -> tuple[Settings, dict[str, str]]:
    """Settings of the test's archive and the environment of its workers (same setup)."""
    values = {"database_url": pg_url, "queue.backend": "celery", "queue.broker_url": broker,
              "queue.host_batch_size": 3, "capture.lease": "20s",
              "fetch.per_host_concurrency": 1, "capture.respect_robots": False,
              "log_level": "WARNING"}
    settings = make_settings(tmp_path / "data", **values)
    initialise(settings)
    env = child_env()
    env.update({
        "ARCHIVER_DATA_DIR": str(settings.data_dir), "ARCHIVER_DATABASE_URL": pg_url,
        "ARCHIVER_QUEUE__BACKEND": "celery", "ARCHIVER_QUEUE__BROKER_URL": broker,
        "ARCHIVER_QUEUE__HOST_BATCH_SIZE": "3", "ARCHIVER_CAPTURE__LEASE": "20s",
        "ARCHIVER_FETCH__PER_HOST_CONCURRENCY": "1",
        "ARCHIVER_FETCH__ALLOW_PRIVATE_NETWORKS": "true", "ARCHIVER_FETCH__PER_HOST_DELAY": "0s",
        "ARCHIVER_FETCH__TIMEOUT": "10s", "ARCHIVER_CAPTURE__RESPECT_ROBOTS": "false",
        "ARCHIVER_LOG_LEVEL": "INFO",
    })
    return settings, env


def add_links(archive: Archive, urls: list[str]) -> None:
    """Add ``urls``, due for capture now (no check due)."""
    now = utcnow()
    with archive.db.session() as session:
        session.add_all(Link(url=u, url_key=url_key(u), host=host_of(u), next_capture_at=now)
                        for u in urls)


def captures_of(archive: Archive, urls: list[str]) -> dict[str, int]:
    """How many page captures each of ``urls`` has."""
    with archive.db.session() as session:
        return dict(session.execute(
            select(Capture.url, func.count(Capture.id))
            .where(Capture.record_type.in_(PAGE_TYPES), Capture.url.in_(urls))
            .group_by(Capture.url)).all())


def wait_for(what: str, done: Any, workers: list[subprocess.Popen[bytes]],
             deadline: float) -> None:
    """Poll ``done()`` until true; fail at ``deadline`` or when a worker exits."""
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        for worker in workers:
            assert worker.poll() is None, f"a worker exited while waiting for {what}"
        time.sleep(0.2)


def stop(workers: list[subprocess.Popen[bytes]]) -> None:
    """Stop the workers (warm shutdown, then kill)."""
    for process in workers:
        if process.poll() is None:
            process.terminate()
    for process in workers:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_a_busy_worker_survives_a_redis_restart(
        tmp_path: Path, sites: list[SlowSite], fresh_pg_url: str,  # noqa: F811
        own_redis: RestartableRedis) -> None:
    """Redis goes away for a second while the worker is in the middle of a batch: the batch
    still ends well, the worker keeps running and takes the next batch sent after Redis is
    back."""
    settings, env = setup(tmp_path, fresh_pg_url, own_redis.url())
    first, second = sites
    first_urls = [first.url(f"/p/{n}.html") for n in range(3)]
    second_urls = [second.url(f"/p/{n}.html") for n in range(3)]
    worker = start_worker(tmp_path, env, "w1")
    started = time.monotonic()
    try:
        with Archive.open(settings) as archive:
            app = make_celery(settings)
            add_links(archive, first_urls)
            assert dispatch_due(archive, WorkKind.CAPTURE, app).batches == 1
            wait_for("the first page request", lambda: first.page_gets >= 1, [worker],
                     started + DEADLINE_S)
            own_redis.restart(down_for=1.0)
            wait_for("the batch in hand", lambda: len(captures_of(archive, first_urls)) == 3,
                     [worker], started + DEADLINE_S)
            time.sleep(3)  # where the worker used to die, once the batch was done
            assert worker.poll() is None, "the worker exited after the Redis restart"
            add_links(archive, second_urls)
            app = make_celery(settings)  # a fresh producer connection to the new Redis
            assert dispatch_due(archive, WorkKind.CAPTURE, app).batches == 1
            wait_for("a batch sent after the restart",
                     lambda: len(captures_of(archive, second_urls)) == 3, [worker],
                     started + DEADLINE_S)
            assert captures_of(archive, first_urls + second_urls) == dict.fromkeys(
                first_urls + second_urls, 1)
    finally:
        stop([worker])
    log = (tmp_path / "w1.log").read_text(errors="replace")
    assert "Unrecoverable error" not in log
    assert "raised unexpected" not in log  # no batch task failed (the marker release either)


def test_a_batch_ends_well_when_redis_is_away_at_its_end(
        tmp_path: Path, sites: list[SlowSite], fresh_pg_url: str,  # noqa: F811
        own_redis: RestartableRedis) -> None:
    """Redis goes away during a batch and is still away when the batch ends: the captures
    count, freeing the host is only logged (its marker expires with the lease)."""
    settings, _env = setup(tmp_path, fresh_pg_url, own_redis.url())
    site = sites[0]
    urls = [site.url(f"/p/{n}.html") for n in range(2)]

    class Capturing:
        sent: list[list[Any]] = []

        def send_task(self, name: str, args: Any = None, **options: Any) -> None:
            self.sent.append(list(args))

    with Archive.open(settings) as archive:
        add_links(archive, urls)
        sender = Capturing()
        dispatch_due(archive, WorkKind.CAPTURE, sender)
        kind, host, ids, owner = sender.sent[0]
        stopper = threading.Thread(target=lambda: (
            wait_for("the first page request", lambda: site.page_gets >= 1, [],
                     time.monotonic() + DEADLINE_S),
            own_redis.stop_process()))
        stopper.start()
        try:
            counts = run_host_batch(archive, kind, host, ids, owner)
        finally:
            stopper.join()
            own_redis.restart(down_for=0)
        assert counts == {"archived": 2}
        assert captures_of(archive, urls) == dict.fromkeys(urls, 1)


class Twice:
    """Sends each task the scheduler hands out twice, as the broker does when it delivers a
    message again."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.sent: list[list[Any]] = []

    def send_task(self, name: str, args: Any = None, **options: Any) -> None:
        self.sent.append(list(args))
        self.app.send_task(name, args=args, **options)
        self.app.send_task(name, args=args, **options)


def test_a_batch_delivered_twice_runs_once(
        tmp_path: Path, sites: list[SlowSite], fresh_pg_url: str,  # noqa: F811
        own_redis: RestartableRedis) -> None:
    """Two copies of one batch message reach two workers at once: one runs the batch, the
    other skips it; the host never sees more than fetch.per_host_concurrency requests at
    once; a copy delivered after the batch is done skips it too."""
    settings, env = setup(tmp_path, fresh_pg_url, own_redis.url())
    site = sites[0]
    urls = [site.url(f"/p/{n}.html") for n in range(3)]
    workers = [start_worker(tmp_path, env, name) for name in ("w1", "w2")]
    started = time.monotonic()

    def logged(text: str) -> int:
        return sum((tmp_path / f"{name}.log").read_text(errors="replace").count(text)
                   for name in ("w1", "w2"))

    try:
        with Archive.open(settings) as archive:
            add_links(archive, urls)
            app = make_celery(settings)
            sender = Twice(app)
            assert dispatch_due(archive, WorkKind.CAPTURE, sender).batches == 1
            wait_for("the batch and its copy", lambda: logged("] succeeded in") == 2, workers,
                     started + DEADLINE_S)
            assert captures_of(archive, urls) == dict.fromkeys(urls, 1)
            assert (site.page_gets, site.max_in_flight) == (3, 1)
            assert logged("delivered twice: this copy skipped") == 1
            app.send_task(TASK_NAME, args=sender.sent[0])  # once more, after it is done
            wait_for("the late copy", lambda: logged("] succeeded in") == 3, workers,
                     started + DEADLINE_S)
            assert logged("delivered twice: this copy skipped") == 2
            assert captures_of(archive, urls) == dict.fromkeys(urls, 1)
    finally:
        stop(workers)
    assert site.page_gets == 3
    assert site.max_in_flight == 1


def test_the_visibility_timeout_outlasts_the_longest_batch(tmp_path: Path) -> None:
    """The broker hands a taken message out again only after the longest batch could end."""
    settings = make_settings(tmp_path / "data", queue__host_batch_size=200,
                             capture__max_page_time="10m", capture__lease="2h")
    timeout = make_celery(settings).conf.broker_transport_options["visibility_timeout"]
    assert timeout > 2 * 3600 + 200 * 600
    assert make_celery(make_settings(tmp_path / "data")).conf.broker_transport_options[
        "visibility_timeout"] >= 3600
