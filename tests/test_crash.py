"""No data lost: SIGKILL at random moments, torn writes, SIGTERM, and two capture runs at once.

Every child is a real process (``tests/crash_worker.py`` or ``python -m archiver``) capturing a
loopback corpus into a real SQLite file and WARC folder.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest
from sqlalchemy import func, select, update
from werkzeug.wrappers import Request, Response

from archiver.archive import Archive, initialise
from archiver.capture import index_locations
from archiver.clock import utcnow
from archiver.demo.fixtureweb import Site
from archiver.errors import WriteError
from archiver.jobs import WorkKind, run_due
from archiver.models import Capture, Check, Link
from archiver.settings import Settings, load_settings
from archiver.urls import host_of, url_key
from archiver.warc.repair import QUARANTINE
from archiver.warc.store import OPEN_SUFFIX
from archiver.warc.verify import verify
from tests.crash_worker import exchange
from tests.test_warc import warcio_check, writes_fail_past

WORKER = Path(__file__).with_name("crash_worker.py")
ROOT = WORKER.parent.parent
KILLS = 22  # SIGKILLs that land while the child is working
SEED = 20240611
PAGE_TYPES = ("response", "revisit")


# -- set-up ----------------------------------------------------------------------------------

def write_config(tmp_path: Path, **values: object) -> tuple[Path, Settings]:
    """A TOML settings file the children read (no environment), and the same settings here."""
    base: dict[str, object] = {
        "data_dir": str(tmp_path / "data"), "log_level": "WARNING",
        "fetch.allow_private_networks": True, "fetch.per_host_delay": "0s",
        "fetch.per_host_concurrency": 8, "fetch.concurrency": 8, "fetch.timeout": "20s",
        "capture.respect_robots": False,
    }
    base.update(values)
    sections: dict[str, dict[str, object]] = {}
    for name, value in base.items():
        section, _, key = name.rpartition(".")
        sections.setdefault(section, {})[key] = value

    def toml(value: object) -> str:
        return ("true" if value else "false") if isinstance(value, bool) else json.dumps(value)

    lines = [f"{key} = {toml(value)}" for key, value in sections.pop("", {}).items()]
    for section, table in sections.items():
        lines += [f"[{section}]", *(f"{key} = {toml(value)}" for key, value in table.items())]
    path = tmp_path / "archiver.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = load_settings(path, env={})
    initialise(settings)
    return path, settings


def child_env() -> dict[str, str]:
    """The environment of a child: no ARCHIVER_* leaking in, the repository importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def slow(body: bytes, content_type: str, delay: float) -> Callable[[Request], Response]:
    """A route handler that sends a fixed answer after ``delay`` seconds."""

    def handler(_request: Request) -> Response:
        time.sleep(delay)
        return Response(body, content_type=content_type)

    return handler


def build_corpus(site: Site, pages: int, rng: random.Random, page_delay: float,
                 requisite_delay: float) -> list[str]:
    """Pages with a shared style sheet and three requisites of their own; some images are big."""
    site.route("/s/common.css", slow(b"body{margin:0}", "text/css", requisite_delay))
    urls = []
    for n in range(pages):
        html = (f"<html><head><link rel=stylesheet href=/s/common.css>"
                f"<link rel=stylesheet href=/s/{n}.css><script src=/j/{n}.js></script></head>"
                f"<body><h1>Page {n}</h1><img src=/i/{n}.png><p>{'text ' * 200}</p></body></html>")
        image = rng.randbytes(1_500_000 if n % 8 == 0 else rng.randrange(2_000, 40_000))
        for path, body, kind, delay in (
                (f"/p/{n}.html", html.encode(), "text/html; charset=utf-8", page_delay),
                (f"/s/{n}.css", f"h1{{color:#{n:06x}}}".encode(), "text/css", requisite_delay),
                (f"/j/{n}.js", f"var page={n};".encode(), "text/javascript", requisite_delay),
                (f"/i/{n}.png", image, "image/png", requisite_delay)):
            site.route(path, slow(body, kind, delay * rng.uniform(0.5, 1.5)))
        urls.append(site.url(f"/p/{n}.html"))
    return urls


def add_due_links(archive: Archive, urls: list[str]) -> None:
    """Links due for capture now (and never for checking)."""
    now = utcnow()
    with archive.db.session() as session:
        session.add_all(Link(url=u, url_key=url_key(u), host=host_of(u), next_capture_at=now)
                        for u in urls)


def due_count(archive: Archive) -> int:
    """Links still due for capture."""
    with archive.db.session() as session:
        return int(session.scalar(select(func.count(Link.id))
                                  .where(Link.next_capture_at <= utcnow())) or 0)


def page_captures(archive: Archive) -> dict[str, int]:
    """Index rows of each link's own page (response or revisit), by link URL."""
    with archive.db.session() as session:
        links = list(session.execute(select(Link.url, Link.url_key)))
        counts = dict(session.execute(
            select(Capture.url_key, func.count(Capture.id))
            .where(Capture.record_type.in_(PAGE_TYPES)).group_by(Capture.url_key)).all())
    return {url: int(counts.get(key, 0)) for url, key in links}


def start_worker(config: Path, *args: str, log: IO[str] | None = None) -> subprocess.Popen[str]:
    """``crash_worker.py cli --config CONFIG ARGS...``, its stdout piped; Ctrl-C reaches it as
    on a terminal even when the tests run as a background job (which ignores SIGINT)."""
    return subprocess.Popen(
        [sys.executable, str(WORKER), "cli", "--config", str(config), *args],
        stdout=subprocess.PIPE, stderr=log if log is not None else subprocess.PIPE, text=True,
        env=child_env(), cwd=ROOT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509


def wait_ready(child: subprocess.Popen[str]) -> None:
    """Block until the child printed ``ready`` (its imports are done)."""
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line.strip() == "ready", line


def assert_archive_sound(archive: Archive) -> None:
    """Every WARC file passes warcio check, verify is clean, and no writer is left open."""
    files = [archive.store.path_of(name) for name in archive.store.files()]
    assert files
    result = warcio_check(*files)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert [p.line() for p in verify(archive)] == []
    assert list(archive.store.directory.glob("*" + OPEN_SUFFIX)) == []
    with archive.db.session() as session:
        rows = session.scalar(select(func.count(Capture.id)))
        distinct = session.scalar(select(func.count(func.distinct(Capture.record_id))))
    assert rows == distinct  # no record indexed twice


# -- (a) SIGKILL at random moments -------------------------------------------------------------

@dataclass
class KillStats:
    """What the kill loop saw."""

    started: int = 0
    kills: int = 0
    rounds: int = 1
    dead_writers: int = 0  # ``.open`` markers seen after each kill: files left open
    left_for_final: int = 0  # links still due when the kills stopped


def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    lease = 0.3  # runs never overlap here; the lease only has to lapse between them
    config, settings = write_config(tmp_path, **{"capture.lease": f"{lease}s"})
    stats = KillStats()
    started = time.monotonic()
    with Site("crash") as site, Archive.open(settings) as archive, \
            open(tmp_path / "children.log", "w", encoding="utf-8") as log:
        urls = build_corpus(site, 40, random.Random(SEED + 1), page_delay=0.1,
                            requisite_delay=0.06)
        add_due_links(archive, urls)
        # The zygote imports once and forks each run, so the kills land in the work, not in
        # the imports; each child is a separate process that a SIGKILL ends on the spot.
        zygote = subprocess.Popen(
            [sys.executable, str(WORKER), "zygote", "--config", str(config), "capture"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
            env=child_env(), cwd=ROOT)
        assert zygote.stdin is not None and zygote.stdout is not None

        def tell(command: str) -> str:
            assert zygote.stdin is not None and zygote.stdout is not None
            zygote.stdin.write(command + "\n")
            zygote.stdin.flush()
            return zygote.stdout.readline().strip()

        try:
            while stats.kills < KILLS:
                requests = sum(dict(site.hits).values())
                assert tell("run") == "started"
                stats.started += 1
                if rng.random() < 0.75:  # mostly timed from the child's first request, so
                    deadline = time.monotonic() + 5  # the kill lands in fetching and writing
                    while (sum(dict(site.hits).values()) == requests
                           and time.monotonic() < deadline):
                        time.sleep(0.01)
                time.sleep(rng.uniform(0.05, 1.0))
                if int(tell("kill")) == -signal.SIGKILL:
                    stats.kills += 1
                stats.dead_writers += len(list(settings.warc_dir.glob("*" + OPEN_SUFFIX)))
                if due_count(archive) == 0:  # a round is complete: make every link due again
                    with archive.db.session() as session:
                        session.execute(update(Link).values(next_capture_at=utcnow()))
                    stats.rounds += 1
                time.sleep(lease)
                assert time.monotonic() - started < 120, stats
        finally:
            zygote.stdin.close()
            zygote.wait(timeout=30)
        # Restart and finish: leases of the killed runs lapse after capture.lease.
        stats.left_for_final = due_count(archive)
        for _ in range(5):
            if due_count(archive) == 0:
                break
            child = start_worker(config, "capture", log=log)
            wait_ready(child)
            assert child.wait(timeout=60) == 0
        assert due_count(archive) == 0
    log_text = (tmp_path / "children.log").read_text(encoding="utf-8")
    repairs = [line.split("repair: ", 1)[1] for line in log_text.splitlines() if "repair: " in line]
    quarantined = list((settings.warc_dir / QUARANTINE).glob("*")) \
        if (settings.warc_dir / QUARANTINE).exists() else []

    with Archive.open(settings) as archive:
        assert_archive_sound(archive)
        written = sum(1 for name in archive.store.files()
                      for _ in archive.store.iter_locations(name))
        with archive.db.session() as session:
            indexed = int(session.scalar(select(func.count(Capture.id))) or 0)
        print(f"\n{stats}; {written - indexed} of {written} records written but never indexed "
              f"(the killed runs'), {len(quarantined)} quarantined, "
              f"{time.monotonic() - started:.1f}s; repairs: {repairs}")
        assert stats.dead_writers >= KILLS // 4  # the kills did land while files were open
        # Runs never overlap here, and a capture's index rows and the release of its lease are
        # one transaction: so each round captured each link's page exactly once.
        assert page_captures(archive) == {url: stats.rounds for url in urls}
        with archive.db.session() as session:
            assert session.scalar(select(func.count(Link.id))
                                  .where(Link.capture_lease_owner.is_not(None))) == 0
        assert archive.prepare_store() == []  # nothing left to repair


# -- (b) a torn write is cut off at the next start ----------------------------------------------

def run_torn(config: Path, *flags: str) -> tuple[subprocess.Popen[str], dict[str, object]]:
    """A child that writes three records and half a fourth, then dies (or holds)."""
    child = subprocess.Popen([sys.executable, str(WORKER), "torn", str(config), "3", *flags],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=child_env(), cwd=ROOT)
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line, child.communicate()[1] if "--hold" not in flags else ""
    return child, json.loads(line)


@pytest.mark.parametrize("indexed", [True, False], ids=["tail-from-last-row", "whole-file"])
def test_partial_tail_is_cut_and_quarantined(tmp_path: Path, indexed: bool) -> None:
    config, settings = write_config(tmp_path)
    child, torn = run_torn(config, *([] if indexed else ["--no-index"]))
    assert child.wait(timeout=30) == -signal.SIGKILL
    name, good_end, size = str(torn["file"]), int(str(torn["good_end"])), int(str(torn["size"]))
    path = settings.warc_dir / name
    assert path.stat().st_size == size > good_end
    assert (settings.warc_dir / (name + OPEN_SUFFIX)).exists()
    with Archive.open(settings) as archive:
        assert verify(archive)  # the partial tail is reported before the repair
        with archive.db.session() as session:  # an index row pointing into the torn bytes
            session.add(Capture(url="http://example.test/torn/cut",
                                url_key=url_key("http://example.test/torn/cut"),
                                captured_at=utcnow(), record_type="response", status=200,
                                warc_file=name, offset=good_end, length=size - good_end,
                                record_id="<urn:uuid:00000000-0000-0000-0000-000000000000>"))
        # Repair runs lazily, before this process's first write.
        archive.store.write_exchange(exchange(99))
        notes = archive.repairs
        assert any(f"cut {size - good_end} bytes" in note for note in notes), notes
        assert any("removed 1 index rows" in note for note in notes), notes
    assert path.stat().st_size == good_end
    kept = list((settings.warc_dir / QUARANTINE).glob(f"{name}.partial-*"))
    assert len(kept) == 1 and kept[0].stat().st_size == size - good_end
    assert not (settings.warc_dir / (name + OPEN_SUFFIX)).exists()
    with Archive.open(settings) as archive:
        assert_archive_sound(archive)
        with archive.db.session() as session:
            rows = session.scalar(select(func.count(Capture.id)))
        assert rows == (3 if indexed else 0)  # the bogus row is gone


def test_damage_inside_a_file_is_not_cut(tmp_path: Path) -> None:
    config, settings = write_config(tmp_path)
    child, torn = run_torn(config, "--no-index")
    assert child.wait(timeout=30) == -signal.SIGKILL
    path = settings.warc_dir / str(torn["file"])
    with open(path, "r+b") as handle:  # spoil bytes inside the second exchange's records
        handle.seek(int(str(torn["good_end"])) // 2)
        handle.write(b"\0" * 64)
    with Archive.open(settings) as archive:
        notes = archive.prepare_store()
    assert any("nothing cut" in note for note in notes), notes
    assert path.stat().st_size == torn["size"]  # whole records follow the damage: kept


def test_a_live_writers_file_is_left_alone(tmp_path: Path) -> None:
    config, settings = write_config(tmp_path)
    child, torn = run_torn(config, "--hold")
    path = settings.warc_dir / str(torn["file"])
    try:
        with Archive.open(settings) as archive:
            assert archive.prepare_store() == []  # its writer is alive: hands off
        assert path.stat().st_size == torn["size"]
    finally:
        child.kill()
        child.wait(timeout=30)
    with Archive.open(settings) as archive:
        assert any("cut" in note for note in archive.prepare_store())
    assert path.stat().st_size == torn["good_end"]


# -- (c) SIGTERM and Ctrl-C finish the pages in hand ---------------------------------------------

def leases_left(archive: Archive) -> int:
    """Links still leased for checking or capturing."""
    with archive.db.session() as session:
        return int(session.scalar(select(func.count(Link.id)).where(
            (Link.capture_lease_owner.is_not(None)) | (Link.check_lease_owner.is_not(None))))
            or 0)


@pytest.mark.parametrize(("command", "stop", "message", "status"), [
    ("capture", signal.SIGTERM, "stopped by SIGTERM", 0),
    ("capture", signal.SIGINT, "stopped by SIGINT", 130),  # Ctrl-C: kept, but "interrupted"
    ("scheduler", signal.SIGTERM, "scheduler stopped", 0),
])
def test_a_stop_finishes_the_pages_in_hand_and_keeps_them(
        tmp_path: Path, command: str, stop: signal.Signals, message: str, status: int) -> None:
    """Before, Ctrl-C went on with every claimed link and then kept nothing it had checked."""
    config, settings = write_config(tmp_path, **{"fetch.concurrency": 2})
    with Site("slow") as site, Archive.open(settings) as archive:
        urls = build_corpus(site, 12, random.Random(SEED), page_delay=0.6, requisite_delay=0.3)
        add_due_links(archive, urls)
        child = start_worker(config, command)
        wait_ready(child)
        deadline = time.monotonic() + 20
        while not any(path.startswith("/p/") for path in dict(site.hits)):
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.02)
        child.send_signal(stop)
        _out, err = child.communicate(timeout=30)
        begun = {site.url(path) for path in site.hits if path.startswith("/p/")}
    assert child.returncode == status, err
    assert message in err, err
    captured = {url for url, count in page_captures(archive).items() if count}
    assert captured == begun  # every page begun was finished, and no other was begun
    assert 0 < len(captured) < len(urls)
    with Archive.open(settings) as reopened:
        assert_archive_sound(reopened)
        assert reopened.prepare_store() == []
        assert leases_left(reopened) == 0  # the links not begun are the next run's at once


def test_ctrl_c_during_checks_keeps_the_checks_made_and_exits_130(tmp_path: Path) -> None:
    config, settings = write_config(tmp_path, **{"fetch.concurrency": 2})
    with Site("slow") as site, Archive.open(settings) as archive:
        urls = build_corpus(site, 12, random.Random(SEED), page_delay=0.6, requisite_delay=0.3)
        now = utcnow()
        with archive.db.session() as session:
            session.add_all(Link(url=u, url_key=url_key(u), host=host_of(u), next_check_at=now)
                            for u in urls)
        child = start_worker(config, "check")
        wait_ready(child)
        deadline = time.monotonic() + 20
        while not any(path.startswith("/p/") for path in dict(site.hits)):
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.02)
        child.send_signal(signal.SIGINT)
        _out, err = child.communicate(timeout=30)
        begun = {site.url(path) for path in site.hits}
    assert child.returncode == 130, err
    assert "stopped by SIGINT" in err, err
    with Archive.open(settings) as reopened, reopened.db.session() as session:
        checked = set(session.scalars(select(Link.url).join(Check, Check.link_id == Link.id)))
        assert checked == begun & set(urls)  # every check begun was finished and kept
        assert 0 < len(checked) < len(urls)
        assert leases_left(reopened) == 0


# -- (d) two `archiver capture` processes at once --------------------------------------------------

@dataclass
class Run:
    """One `archiver capture` process: when it ran and how many links it claimed."""

    lane: int
    began: float
    ended: float
    claimed: int


def capture_lane(config: Path, lane: int, runs: list[Run], lock: threading.Lock) -> None:
    """Run `archiver capture` again and again until a run finds nothing to claim."""
    for _ in range(30):
        began = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "archiver", "--config", str(config),
                               "capture"], capture_output=True, text=True, env=child_env(),
                              cwd=ROOT, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        match = re.search(r"capture: (?:\d+ of (\d+) links|nothing)", done.stderr)
        assert match, done.stderr
        claimed = int(match.group(1) or 0)  # "capture: nothing due now / leased by another"
        with lock:
            runs.append(Run(lane, began, time.monotonic(), claimed))
        if claimed == 0:
            return


def test_two_capture_processes_capture_each_link_once(tmp_path: Path) -> None:
    config, settings = write_config(tmp_path, **{"capture.batch_size": 5})
    runs: list[Run] = []
    lock = threading.Lock()
    with Site("shared") as site, Archive.open(settings) as archive:
        urls = build_corpus(site, 12, random.Random(SEED), page_delay=0.05,
                            requisite_delay=0.02)
        add_due_links(archive, urls)
        lanes = [threading.Thread(target=capture_lane, args=(config, n, runs, lock))
                 for n in (1, 2)]
        for lane in lanes:
            lane.start()
        for lane in lanes:
            lane.join(timeout=120)
        page_hits = {path: hits for path, hits in site.hits.items() if path.startswith("/p/")}
    assert {run.lane for run in runs} == {1, 2}
    assert any(a.lane != b.lane and a.began < b.ended and b.began < a.ended
               for a in runs for b in runs)  # the two lanes really ran at the same time
    assert sum(run.claimed for run in runs) == len(urls)  # no link claimed twice
    assert page_captures(archive) == {url: 1 for url in urls}
    assert set(page_hits.values()) == {1}  # and no page fetched twice
    with Archive.open(settings) as reopened:
        assert_archive_sound(reopened)


def test_a_run_longer_than_its_lease_keeps_its_links_from_the_next_run(tmp_path: Path) -> None:
    """A run renews its leases as it goes (every third of ``capture.lease``): one that
    outlasted its lease (a large ``--all``) used to have the links it had not reached yet
    claimed by the next tick or command, and captured twice (found by a review)."""
    config, settings = write_config(tmp_path, **{
        "fetch.concurrency": 1, "fetch.per_host_concurrency": 1, "capture.lease": "1s"})
    with Site("slow") as site, Archive.open(settings) as archive:
        urls = []
        for n in range(4):
            site.route(f"/slow/{n}", slow(random.randbytes(2000), "application/octet-stream", 0.7))
            urls.append(site.url(f"/slow/{n}"))
        add_due_links(archive, urls)
        first = start_worker(config, "capture", "--all")
        wait_ready(first)
        deadline = time.monotonic() + 20
        while not any(path.startswith("/slow/") for path in dict(site.hits)):
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.02)
        time.sleep(1.2)  # the first run is still at work, past its first lease
        assert first.poll() is None
        second = run_due(archive, WorkKind.CAPTURE)
        _out, err = first.communicate(timeout=60)
        hits = {path: n for path, n in dict(site.hits).items() if path.startswith("/slow/")}
    assert first.returncode == 0, err
    assert second.claimed == 0
    assert hits == {f"/slow/{n}": 1 for n in range(4)}  # no page fetched twice
    assert page_captures(archive) == {url: 1 for url in urls}


# -- (e) a disk that fills up during a capture ---------------------------------------------------

FULL_DISK = {"fetch.concurrency": 1, "capture.processes": 1, "capture.requisites": False,
             "fetch.timeout": "5s", "capture.lease": "1s"}


def big_pages(site: Site, count: int, size: int) -> list[str]:
    """``count`` pages of ``size`` incompressible bytes each."""
    for n in range(count):
        site.page(f"/big/{n}.bin", os.urandom(size), content_type="application/octet-stream")
    return [site.url(f"/big/{n}.bin") for n in range(count)]


def file_size_limit(limit: int) -> Callable[[], None]:
    """A preexec_fn: writes past ``limit`` bytes fail with EFBIG (a full disk, as a process
    sees it), and the signal that would kill the process is ignored."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return apply


def room_for_two_pages(settings: Settings) -> int:
    """A file size limit with room for the database (and its WAL) and two 400 kB pages of a
    WARC file, not four."""
    return max(1_000_000, (settings.data_dir / "archiver.sqlite3").stat().st_size + 600_000)


def capture_rows(archive: Archive) -> list[tuple[str, str, int]]:
    """(URL, WARC file, offset) of every index row."""
    with archive.db.session() as session:
        return sorted((c.url, c.warc_file, c.offset) for c in session.scalars(select(Capture)))


def site_hits(site: Site, prefix: str) -> int:
    """Requests the site answered for paths under ``prefix``."""
    return sum(count for path, count in dict(site.hits).items() if path.startswith(prefix))


def test_a_write_that_fails_midway_leaves_no_torn_record_in_a_file_closed_as_clean(
        tmp_path: Path) -> None:
    """The disk fills mid-record: the failed write is cut back off (a file closed as clean,
    marker removed, is never looked at by the repair again); the failed capture is one log
    line, the links not begun are left for the next run (not each fetched only to fail), the
    run exits non-zero, and what was stored stays."""
    config, settings = write_config(tmp_path, **FULL_DISK)
    with Site("full") as site, Archive.open(settings) as archive:
        urls = big_pages(site, 4, 400_000)
        add_due_links(archive, urls)
        failed = subprocess.run(
            [sys.executable, str(WORKER), "cli", "--config", str(config), "capture"],
            capture_output=True, text=True, env=child_env(), cwd=ROOT, timeout=60, check=False,
            preexec_fn=file_size_limit(room_for_two_pages(settings)))
        assert failed.returncode != 0, failed.stderr
        assert "Traceback" not in failed.stderr, failed.stderr
        errors = [line for line in failed.stderr.splitlines() if " ERROR " in line]
        assert len(errors) == 2, errors
        assert "link 3: cannot write" in errors[1] and "File too large" in errors[1], errors
        assert "the links not begun are left for the next run" in errors[0], errors
        assert site_hits(site, "/big/") == 3  # the fourth page was not fetched
        stored = capture_rows(archive)
        kept = {url for url, _, _ in stored}
        assert len(kept) == 2
        time.sleep(1.1)  # the failed links' leases run out: they are due again
        again = subprocess.run(
            [sys.executable, str(WORKER), "cli", "--config", str(config), "capture", "--all"],
            capture_output=True, text=True, env=child_env(), cwd=ROOT, timeout=60, check=False)
        assert again.returncode == 0, again.stderr
        assert set(stored) <= set(capture_rows(archive))  # nothing stored was lost
        assert page_captures(archive) == {url: 2 if url in kept else 1 for url in urls}
    with Archive.open(settings) as reopened:
        assert_archive_sound(reopened)


def test_after_a_full_disk_the_scheduler_does_not_write_behind_a_torn_record(
        tmp_path: Path) -> None:
    """A long-running scheduler whose disk is full for a while, then has room again: the
    captures made after that stay readable from their files alone, so `archiver reindex`
    gives back every row the index held."""
    config, settings = write_config(tmp_path, **FULL_DISK, **{
        "scheduler.tick_interval": "1s", "capture.retry_interval": "0s",
        "scheduler.discover_interval": "36500d"})
    with Site("full") as site, Archive.open(settings) as archive:
        urls = big_pages(site, 4, 400_000)
        add_due_links(archive, urls)
        child = subprocess.Popen(
            [sys.executable, str(WORKER), "cli", "--config", str(config), "scheduler"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=child_env(),
            cwd=ROOT, preexec_fn=file_size_limit(room_for_two_pages(settings)))  # noqa: PLW1509
        try:
            deadline = time.monotonic() + 20
            while len(capture_rows(archive)) < 2 or site_hits(site, "/big/") < 3:
                assert time.monotonic() < deadline and child.poll() is None
                time.sleep(0.1)
            time.sleep(0.5)
            # Someone frees space: the same process goes on.
            resource.prlimit(child.pid, resource.RLIMIT_FSIZE,
                             (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            deadline = time.monotonic() + 20
            while len({url for url, _, _ in capture_rows(archive)}) < len(urls):
                assert time.monotonic() < deadline and child.poll() is None
                time.sleep(0.1)
        finally:
            child.send_signal(signal.SIGTERM)
            _out, err = child.communicate(timeout=30)
        before = capture_rows(archive)
    assert "Traceback" not in err, err
    reindexed = subprocess.run(
        [sys.executable, "-m", "archiver", "--config", str(config), "reindex"],
        capture_output=True, text=True, env=child_env(), cwd=ROOT, timeout=60, check=False)
    assert reindexed.returncode == 0, reindexed.stderr
    with Archive.open(settings) as reopened:
        assert capture_rows(reopened) == before
        assert_archive_sound(reopened)


def test_a_failed_write_that_cannot_be_cut_back_is_left_to_the_repair(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When even cutting the failed write back fails, the file keeps its marker and is given
    up: the next write begins a new file, and the repair that runs first cuts the torn one."""
    _config, settings = write_config(tmp_path)
    with Archive.open(settings) as archive:
        first = archive.store.write_exchange(exchange(0))
        torn = archive.store.path_of(first.warc_file)
        good_end = torn.stat().st_size

        def refuse(_descriptor: int, _length: int) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(os, "ftruncate", refuse)  # no real file system refuses on cue
        try:
            with writes_fail_past(good_end + 5_000), \
                    pytest.raises(WriteError, match="left to the crash repair"):
                archive.store.write_exchange(exchange(1))
        finally:
            monkeypatch.undo()
        assert torn.stat().st_size == good_end + 5_000  # the torn bytes, still marked
        assert (settings.warc_dir / (torn.name + OPEN_SUFFIX)).exists()
        second = archive.store.write_exchange(exchange(2))
        assert second.warc_file != first.warc_file
        assert any(f"cut 5000 bytes of a partial record at byte {good_end}" in note
                   for note in archive.repairs), archive.repairs
        with archive.db.session() as session:
            index_locations(session, [first, second])
        archive.store.close()
    assert torn.stat().st_size == good_end
    with Archive.open(settings) as reopened:
        assert_archive_sound(reopened)
