"""Per-host limits held across the processes of one machine (scheduler, CLI, web), through
locks on a file in the data folder: real processes, a real loopback site."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from werkzeug.wrappers import Response

from archiver.archive import POLITENESS_FILE, Archive
from archiver.demo.fixtureweb import Site
from archiver.net.machine_limits import BUCKETS, MachineHostLimiter, bucket_of
from archiver.net.politeness import HostLimiter
from tests.conftest import InFlight, assert_a_stop_ends_the_wait

ROOT = Path(__file__).resolve().parents[1]

# A process of the archive: its own client and limiter over the shared file, some threads.
CHILD = textwrap.dedent("""
    import sys, threading
    from pathlib import Path
    from archiver.net.client import HttpClient
    from archiver.net.machine_limits import MachineHostLimiter
    from archiver.net.politeness import HostLimiter
    from tests.conftest import make_settings

    lock_file, url, threads, each, per_host, delay, shared = sys.argv[1:]
    per_host, delay = int(per_host), float(delay)
    limiter = (MachineHostLimiter(Path(lock_file), per_host, delay) if shared == "1"
               else HostLimiter(per_host, delay))
    client = HttpClient(make_settings(Path(lock_file).parent / "child"), limiter)

    def fetch():
        for _ in range(int(each)):
            client.fetch(url)

    workers = [threading.Thread(target=fetch) for _ in range(int(threads))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
""")


def _run_processes(tmp_path: Path, url: str, *, processes: int, threads: int, each: int,
                   per_host: int, delay: float, shared: bool = True) -> None:
    lock_file = tmp_path / POLITENESS_FILE
    children = [subprocess.Popen(
        [sys.executable, "-c", CHILD, str(lock_file), url, str(threads), str(each),
         str(per_host), str(delay), "1" if shared else "0"], cwd=ROOT)
        for _ in range(processes)]
    for child in children:
        assert child.wait(timeout=60) == 0


def _slow_site(site: Site, seconds: float) -> InFlight:
    answering = InFlight()

    def slow(_request: object) -> Response:
        with answering.one():
            time.sleep(seconds)
        return Response("ok")

    site.route("/slow", slow)
    return answering


def test_processes_together_keep_a_hosts_concurrency(tmp_path: Path, site: Site) -> None:
    answering = _slow_site(site, 0.15)
    _run_processes(tmp_path, site.url("/slow"), processes=3, threads=3, each=2, per_host=2,
                   delay=0.0)
    assert answering.peak == 2
    # Each process on its own limits, as before: together they went past them.
    alone = _slow_site(site, 0.15)
    _run_processes(tmp_path, site.url("/slow"), processes=3, threads=3, each=2, per_host=2,
                   delay=0.0, shared=False)
    assert alone.peak > 2


def test_processes_together_keep_a_hosts_delay(tmp_path: Path, site: Site) -> None:
    starts: list[float] = []
    site.route("/spaced", lambda _r: (starts.append(time.monotonic()), Response("ok"))[1])
    _run_processes(tmp_path, site.url("/spaced"), processes=2, threads=2, each=2, per_host=2,
                   delay=0.25)
    assert len(starts) == 8
    gaps = [b - a for a, b in itertools.pairwise(sorted(starts))]
    assert min(gaps) >= 0.22, gaps


def test_a_killed_process_gives_its_slot_back(tmp_path: Path) -> None:
    lock_file = tmp_path / POLITENESS_FILE
    with _held_elsewhere(lock_file) as holder:
        limiter = MachineHostLimiter(lock_file, 1, 0.0)
        entered = threading.Event()

        def take() -> None:
            with limiter.slot("busy.example"):
                entered.set()

        taker = threading.Thread(target=take)
        taker.start()
        assert not entered.wait(0.5)  # the other process holds the host's only slot
        os.kill(holder.pid, signal.SIGKILL)
        assert entered.wait(5)  # the kernel dropped its lock with it
        taker.join(5)
        limiter.close()


def test_a_stop_ends_the_wait_for_a_slot_held_by_another_process(tmp_path: Path) -> None:
    lock_file = tmp_path / POLITENESS_FILE
    limiter = MachineHostLimiter(lock_file, 1, 0.0)
    assert_a_stop_ends_the_wait(limiter, hold=lambda: _held_elsewhere(lock_file))
    assert limiter._held == {} and limiter._slots == {}
    with limiter.slot("busy.example"):  # nothing of the abandoned wait is left locked
        pass
    limiter.close()


def test_a_stop_ends_the_wait_for_the_machines_next_start(tmp_path: Path) -> None:
    limiter = MachineHostLimiter(tmp_path / POLITENESS_FILE, 2, 30.0)
    assert_a_stop_ends_the_wait(limiter)
    assert limiter._held == {} and limiter._slots == {}
    limiter.close()


@contextlib.contextmanager
def _held_elsewhere(lock_file: Path,
                    host: str = "busy.example") -> Iterator[subprocess.Popen[str]]:
    """``host``'s only slot held by another process (this one's locks would not conflict)."""
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from pathlib import Path
        from archiver.net.machine_limits import MachineHostLimiter
        limiter = MachineHostLimiter(Path({str(lock_file)!r}), 1, 0.0)
        with limiter.slot({host!r}):
            print("held", flush=True)
            time.sleep(60)
    """)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_a_next_start_left_by_an_earlier_boot_is_ignored(tmp_path: Path) -> None:
    lock_file = tmp_path / POLITENESS_FILE
    limiter = MachineHostLimiter(lock_file, 2, 1.0)
    bucket = bucket_of("example.org")
    os.pwrite(limiter._fd, struct.pack("<d", time.monotonic() + 10**7), bucket * 8)
    started = time.monotonic()
    with limiter.slot("example.org"):
        pass
    assert time.monotonic() - started < 0.5
    assert 0 <= bucket < BUCKETS
    limiter.close()


def test_the_archive_shares_its_limits_through_the_data_folder(archive: Archive) -> None:
    limiter = archive.client().limiter
    assert isinstance(limiter, MachineHostLimiter) and isinstance(limiter, HostLimiter)
    assert (archive.settings.data_dir / POLITENESS_FILE).exists()
