"""Per-host politeness across processes: with ``queue.backend = celery`` every process keeps
``fetch.per_host_concurrency`` and ``fetch.per_host_delay`` in Redis, for every host it
contacts (a CDN that several link hosts' pages share, not only the link's own host).

Real redis-server, real loopback HTTP servers that count requests in flight and note when
each began, and real separate processes (plain children, and `archiver worker` processes):
limits held in one process's memory would let two processes exceed them together.
"""

from __future__ import annotations

import itertools
import json
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from werkzeug.wrappers import Request, Response

from archiver.archive import Archive, initialise
from archiver.clock import utcnow
from archiver.demo.fixtureweb import Site
from archiver.jobs import WorkKind
from archiver.models import Capture, Link
from archiver.net.client import DeadlinePassed, HttpClient
from archiver.net.machine_limits import MachineHostLimiter
from archiver.net.shared_limits import SharedHostLimiter, holders_key
from archiver.queue import dispatch_due
from archiver.settings import Settings
from archiver.tasks import make_celery
from archiver.urls import host_of, url_key
from tests.conftest import assert_a_stop_ends_the_wait, make_settings
from tests.pg import fresh_pg_url, pg_server  # noqa: F401
from tests.redis_server import redis_server, redis_url  # noqa: F401
from tests.test_crash import child_env
from tests.test_distributed_faults import stop

TOLERANCE_S = 0.1  # a start may reach the server this much sooner than its spacing says
CHILD_TIMEOUT_S = 60


class CountingSite(Site):
    """A site whose every answer takes ``answer_s``; it notes requests in flight at once and
    when each began (and who sent it).  ``/stall`` answers only once ``unstall`` is set."""

    def __init__(self, name: str, answer_s: float) -> None:
        super().__init__(name)
        self.answer_s = answer_s
        self.in_flight = 0
        self.max_in_flight = 0
        self.starts: list[tuple[float, str, str]] = []  # (monotonic time, path, user agent)
        self.unstall = threading.Event()
        self._count_lock = threading.Lock()
        self.fallback = self._answer

    def _answer(self, request: Request) -> Response:
        if request.path == "/stall":
            self.unstall.wait(CHILD_TIMEOUT_S)
        else:
            time.sleep(self.answer_s)
        return Response(f"/* {request.path} */", content_type="text/css")

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        with self._count_lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.starts.append((time.monotonic(), environ.get("PATH_INFO", ""),
                                environ.get("HTTP_USER_AGENT", "")))
        try:
            return super()._app(environ, start_response)
        finally:
            with self._count_lock:
                self.in_flight -= 1

    def started(self, path: str | None = None) -> list[float]:
        """When the requests (for ``path``, or all) began, in order."""
        return sorted(at for at, seen, _agent in list(self.starts)
                      if path is None or seen == path)

    def wait_for(self, path: str, count: int = 1) -> None:
        """Wait until ``count`` requests for ``path`` have begun."""
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        while len(self.started(path)) < count:
            assert time.monotonic() < deadline, f"{path} was never requested"
            time.sleep(0.01)


@pytest.fixture
def site() -> Iterator[CountingSite]:
    counting = CountingSite("cdn", answer_s=0.5)
    counting.start()
    try:
        yield counting
    finally:
        counting.unstall.set()
        counting.stop()


def closest_starts(starts: list[float]) -> float:
    """The shortest time between two consecutive starts."""
    return min(later - earlier for earlier, later in itertools.pairwise(starts))


def child(code: str, *args: Any) -> subprocess.Popen[str]:
    """A Python child running ``code`` with ``args`` (JSON) as ``sys.argv[1]``; it says
    "ready" and then waits for a line on stdin before going on."""
    return subprocess.Popen([sys.executable, "-c", code, json.dumps(args)], env=child_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def go_together(children: list[subprocess.Popen[str]]) -> None:
    """Wait until every child is ready, then let them all go at once."""
    for process in children:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
    for process in children:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()


# A process of a distributed archive: opens the archive and fetches with its client, from
# several threads.
FETCH_THROUGH_ARCHIVE = """
import json, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from archiver.archive import Archive
from tests.conftest import assert_a_stop_ends_the_wait, make_settings

data_dir, values, urls, threads = json.loads(sys.argv[1])
with Archive.open(make_settings(Path(data_dir), **values)) as archive:
    client = archive.client()
    print("ready", flush=True)
    sys.stdin.readline()
    with ThreadPoolExecutor(threads) as pool:
        statuses = list(pool.map(lambda url: client.fetch(url).final.status, urls))
print(json.dumps(statuses), flush=True)
"""


def test_two_processes_share_each_hosts_slots_and_delay(
        tmp_path: Path, site: CountingSite, redis_url: str) -> None:  # noqa: F811
    """Two processes of one distributed archive fetch from one host, three threads each:
    together they never have more than per_host_concurrency requests in flight there, and
    no two starts are closer than per_host_delay."""
    per_host, delay = 2, 0.25
    values = {"queue.backend": "celery", "queue.broker_url": redis_url,
              "fetch.per_host_concurrency": per_host, "fetch.per_host_delay": f"{delay}s"}
    initialise(make_settings(tmp_path / "data", **values))
    children = [child(FETCH_THROUGH_ARCHIVE, str(tmp_path / "data"), values,
                      [site.url(f"/{name}/{n}.css") for n in range(4)], 3)
                for name in ("a", "b")]
    try:
        go_together(children)
        outputs = [process.communicate(timeout=CHILD_TIMEOUT_S)[0] for process in children]
    finally:
        for process in children:
            process.kill()
            process.wait()
    assert [json.loads(output) for output in outputs] == [[200] * 4, [200] * 4]
    assert len(site.started()) == 8
    assert site.max_in_flight <= per_host
    assert closest_starts(site.started()) >= delay - TOLERANCE_S


def test_only_a_distributed_archive_keeps_its_limits_in_redis(
        tmp_path: Path, redis_url: str) -> None:  # noqa: F811
    """The embedded default keeps its limits in the data folder, for this machine's processes
    (nothing asks for Redis); with the celery backend the archive's client limits hosts
    through Redis."""
    with Archive.open(initialised(tmp_path / "embedded")) as archive:
        assert type(archive.client().limiter) is MachineHostLimiter
    with Archive.open(initialised(tmp_path / "distributed", queue__backend="celery",
                                  queue__broker_url=redis_url)) as archive:
        assert isinstance(archive.client().limiter, SharedHostLimiter)


def initialised(tmp_path: Path, **values: Any) -> Settings:
    """Settings of a new archive in ``tmp_path``."""
    settings = make_settings(tmp_path / "data", **values)
    initialise(settings)
    return settings


# Takes a slot on the site for /stall (which does not answer) and waits to be killed.
HOLD_AND_DIE = """
import json, sys
import redis
from pathlib import Path
from archiver.net.client import HttpClient
from archiver.net.shared_limits import SharedHostLimiter
from tests.conftest import assert_a_stop_ends_the_wait, make_settings

data_dir, url, redis_url, hold = json.loads(sys.argv[1])
limiter = SharedHostLimiter(redis.Redis.from_url(redis_url), 1, 0.0, hold=hold)
client = HttpClient(make_settings(Path(data_dir), fetch__timeout="60s"), limiter)
print("ready", flush=True)
sys.stdin.readline()
client.fetch(url)
"""


def shared_client(tmp_path: Path, url: str, per_host: int = 1, delay: float = 0.0,
                  hold: float = 30.0) -> HttpClient:
    """A client with a limiter of its own on Redis at ``url``: it stands for a process."""
    import redis

    limiter = SharedHostLimiter(redis.Redis.from_url(url), per_host, delay, hold=hold)
    return HttpClient(make_settings(tmp_path / "data"), limiter)


def test_a_killed_holders_slot_comes_back_when_its_hold_runs_out(
        tmp_path: Path, site: CountingSite, redis_url: str) -> None:  # noqa: F811
    """A process killed mid-request never gives its slot back: the others wait for the
    hold to run out (no sooner: the request may still be in flight), then go on."""
    hold = 1.5
    holder = child(HOLD_AND_DIE, str(tmp_path / "data"), site.url("/stall"), redis_url, hold)
    try:
        go_together([holder])
        site.wait_for("/stall")
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    finally:
        holder.kill()
        holder.wait()
    site.unstall.set()  # the dead holder's request ends at the site; its slot stays taken
    with shared_client(tmp_path, redis_url, hold=hold) as client:
        assert client.fetch(site.url("/after.css")).final.status == 200
    waited = site.started("/after.css")[0] - site.started("/stall")[0]
    assert hold - TOLERANCE_S <= waited <= hold + 1.0


def test_the_wait_for_a_slot_held_elsewhere_counts_towards_the_deadline(
        tmp_path: Path, site: CountingSite, redis_url: str) -> None:  # noqa: F811
    """A request waits for a slot another process holds, then reads its deadline: passed,
    so it is not made (the order HttpClient keeps for its own threads)."""
    first = shared_client(tmp_path, redis_url)
    second = shared_client(tmp_path, redis_url)
    holding = threading.Thread(target=first.fetch, args=(site.url("/stall"),))
    holding.start()
    try:
        site.wait_for("/stall")
        threading.Timer(0.6, site.unstall.set).start()
        began = time.monotonic()
        with pytest.raises(DeadlinePassed):
            second.fetch(site.url("/late.css"), deadline=began + 0.2)
        assert time.monotonic() - began >= 0.5  # it waited for the slot, not for the deadline
    finally:
        site.unstall.set()
        holding.join()
    assert site.started("/late.css") == []


@pytest.mark.parametrize(("per_host", "delay"), [(1, 0.0), (2, 30.0)])
def test_a_stop_ends_the_wait_for_a_slot_or_start_in_redis(
        redis_url: str, per_host: int, delay: float) -> None:  # noqa: F811
    """Held by another process (its own limiter), or its next start a delay away: a stop
    ends the wait, and the abandoned wait leaves nothing held in Redis."""
    import redis

    def limiter() -> SharedHostLimiter:
        return SharedHostLimiter(redis.Redis.from_url(redis_url), per_host, delay)

    holder, waiter = limiter(), limiter()
    host = f"stop-{per_host}.example"
    assert_a_stop_ends_the_wait(waiter, host, hold=lambda: holder.slot(host))
    assert holder.redis.zcard(holders_key(host)) == 0
    holder.close()
    waiter.close()


def test_a_slot_is_held_in_redis_while_its_request_is_in_flight(
        tmp_path: Path, site: CountingSite, redis_url: str) -> None:  # noqa: F811
    """The request in flight holds its slot in Redis (where other processes see it) and
    gives it back as it ends."""
    import redis

    connection = redis.Redis.from_url(redis_url)
    key = holders_key(host_of(site.base_url))
    client = shared_client(tmp_path, redis_url, per_host=2)
    holding = threading.Thread(target=client.fetch, args=(site.url("/stall"),))
    holding.start()
    try:
        site.wait_for("/stall")
        assert connection.zcard(key) == 1
    finally:
        site.unstall.set()
        holding.join()
    try:
        assert connection.zcard(key) == 0
    finally:
        connection.close()
        client.close()


def test_without_redis_the_process_keeps_its_own_limits(
        tmp_path: Path, site: CountingSite, caplog: pytest.LogCaptureFixture) -> None:
    """Redis unreachable: requests are still made, within this process's limits (starts
    spaced by the delay), and one warning says politeness is process-local for now."""
    from tests.pg import free_port

    delay = 0.2
    client = shared_client(tmp_path, f"redis://127.0.0.1:{free_port()}/0", per_host=3,
                           delay=delay)
    with caplog.at_level(logging.WARNING, logger="archiver.net.shared_limits"):
        threads = [threading.Thread(target=client.fetch, args=(site.url(f"/{n}.css"),))
                   for n in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(site.started()) == 3
    assert closest_starts(site.started()) >= delay - TOLERANCE_S
    assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1


def start_worker(tmp_path: Path, env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    """An `archiver worker` running one batch at a time, known at the sites by its agent."""
    log = (tmp_path / f"{name}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-c", "from archiver.cli import main; main()", "worker",
         "--concurrency", "1"],
        env={**env, "ARCHIVER_FETCH__USER_AGENT": f"archiver-test {name}"},
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)


def test_two_workers_share_a_cdn_that_their_link_hosts_use(
        tmp_path: Path, fresh_pg_url: str, redis_url: str) -> None:  # noqa: F811
    """Two `archiver worker` processes capture the pages of two link hosts at once (the
    scheduler's marker keeps each link host to one batch); every page's stylesheet is on one
    CDN host, which must still see at most per_host_concurrency requests at once and starts
    spaced by per_host_delay, across both workers."""
    per_host, delay, pages = 1, 0.2, 4
    cdn = CountingSite("cdn", answer_s=0.4)
    links = [Site(f"link{n}") for n in range(2)]
    for site in [cdn, *links]:
        site.start()
    for n, site in enumerate(links):
        for page in range(pages):
            site.page(f"/p/{page}.html",
                      f"<html><head><link rel=stylesheet href={cdn.url(f'/{n}/{page}.css')}>"
                      f"</head><body><h1>{site.name} page {page}</h1></body></html>")
    values = {"database_url": fresh_pg_url, "queue.backend": "celery",
              "queue.broker_url": redis_url, "queue.host_batch_size": pages,
              "fetch.per_host_concurrency": per_host, "fetch.per_host_delay": f"{delay}s",
              "capture.respect_robots": False, "log_level": "WARNING"}
    settings = make_settings(tmp_path / "data", **values)
    initialise(settings)
    env = child_env()
    env.update({"ARCHIVER_DATA_DIR": str(settings.data_dir),
                "ARCHIVER_DATABASE_URL": fresh_pg_url, "ARCHIVER_QUEUE__BACKEND": "celery",
                "ARCHIVER_QUEUE__BROKER_URL": redis_url,
                "ARCHIVER_FETCH__PER_HOST_CONCURRENCY": str(per_host),
                "ARCHIVER_FETCH__PER_HOST_DELAY": f"{delay}s",
                "ARCHIVER_FETCH__ALLOW_PRIVATE_NETWORKS": "true",
                "ARCHIVER_FETCH__TIMEOUT": "10s", "ARCHIVER_CAPTURE__RESPECT_ROBOTS": "false",
                "ARCHIVER_LOG_LEVEL": "INFO"})
    urls = [site.url(f"/p/{page}.html") for site in links for page in range(pages)]
    workers = [start_worker(tmp_path, env, name) for name in ("w1", "w2")]
    try:
        wait_until_ready(tmp_path, ["w1", "w2"], workers)
        with Archive.open(settings) as archive:
            now = utcnow()
            with archive.db.session() as session:
                session.add_all(Link(url=u, url_key=url_key(u), host=host_of(u),
                                     next_capture_at=now) for u in urls)
            assert dispatch_due(archive, WorkKind.CAPTURE, make_celery(settings)).batches == 2
            deadline = time.monotonic() + CHILD_TIMEOUT_S
            while True:
                with archive.db.session() as session:
                    done = set(session.scalars(select(Capture.url).where(
                        Capture.record_type == "response", Capture.url.in_(urls))))
                if done == set(urls):
                    break
                assert time.monotonic() < deadline, f"captured only {len(done)} pages"
                assert all(worker.poll() is None for worker in workers), "a worker died"
                time.sleep(0.2)
    finally:
        stop(workers)
        for site in [cdn, *links]:
            site.stop()
    agents = {agent.rsplit(" ", 1)[-1] for _at, path, agent in cdn.starts
              if path.endswith(".css")}
    assert agents == {"w1", "w2"}  # both workers fetched from the CDN
    assert len(cdn.started()) == 2 * pages
    assert cdn.max_in_flight <= per_host
    assert closest_starts(cdn.started()) >= delay - TOLERANCE_S


def wait_until_ready(tmp_path: Path, names: list[str],
                     workers: list[subprocess.Popen[bytes]]) -> None:
    """Wait until every worker's log says it is ready to take tasks."""
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    for name in names:
        while "ready" not in (tmp_path / f"{name}.log").read_text(errors="replace"):
            assert time.monotonic() < deadline, f"{name} never got ready"
            assert all(worker.poll() is None for worker in workers), "a worker died"
            time.sleep(0.1)


def test_abandoned_waits_in_redis_leave_the_limit_whole(redis_url: str) -> None:  # noqa: F811
    """Twelve requests wait for one host's single slot (two limiters, as two processes, with
    a delay between starts); half are stopped at different moments of their wait.  No two
    requests ever hold the host at once, each of the others gets its turn, and nothing stays
    held in Redis or in either process."""
    import redis

    from archiver.net.politeness import TurnAbandoned
    from archiver.net.shared_limits import SharedHostLimiter, holders_key

    limiters = [SharedHostLimiter(redis.Redis.from_url(redis_url), 1, 0.05, 4)
                for _ in range(2)]
    host = "abandon.example"
    inside = {"now": 0, "peak": 0, "served": 0, "abandoned": 0}
    lock = threading.Lock()
    stops = [threading.Event() for _ in range(12)]

    def request(number: int) -> None:
        try:
            with limiters[number % 2].slot(host, stops[number]):
                with lock:
                    inside["now"] += 1
                    inside["peak"] = max(inside["peak"], inside["now"])
                time.sleep(0.03)
                with lock:
                    inside["now"] -= 1
                    inside["served"] += 1
        except TurnAbandoned:
            with lock:
                inside["abandoned"] += 1

    threads = [threading.Thread(target=request, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for number in range(0, 12, 2):
        time.sleep(0.02)
        stops[number].set()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads)
    assert inside["peak"] == 1 and inside["served"] + inside["abandoned"] == 12, inside
    assert inside["served"] >= 6, inside
    assert limiters[0].redis.zcard(holders_key(host)) == 0
    assert all(limiter._slots == {} for limiter in limiters)
    for limiter in limiters:
        limiter.close()
