"""Scale benchmark (not a test): 1,000,000 links over 100,000 posts in PostgreSQL.

Prints the time to claim a batch of due links (check and capture), to render the dashboard and
filtered link pages, and the memory of the processes involved. Wall times are noisy on a shared
machine: the CPU time of this process and of PostgreSQL's processes (in ticks of 10 ms) is
printed beside them. Targets: claims and pages under 100 ms, no process above 300 MB.

    python bench/scale.py [--links 1000000 --posts 100000 --repeat 5]

PostgreSQL is started in a temporary folder, as the tests do (tests/pg.py); nothing is left
behind.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from archiver import figures  # noqa: E402
from archiver.archive import Archive, initialise  # noqa: E402
from archiver.jobs import WorkKind, claim_due  # noqa: E402
from archiver.models import Link  # noqa: E402
from archiver.settings import load_settings  # noqa: E402
from tests.pg import PostgresServer  # noqa: E402
from tests.test_postgres import fill_sql, load  # noqa: E402

TARGET_MS = 100
TARGET_MB = 300


def server_cpu_ms(server: PostgresServer) -> float:
    """CPU time used so far by the server's processes (backends and parallel workers), in ms."""
    postmaster = (server.data / "postmaster.pid").read_text().split("\n", 1)[0].strip()
    ticks = 0
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == postmaster:  # the PPID: a child of this server's postmaster
            ticks += int(fields[11]) + int(fields[12])  # utime + stime
    return ticks * 1000 / os.sysconf("SC_CLK_TCK")


@dataclass
class Timing:
    """Median and worst wall time of a few runs, and the median CPU time they used."""

    wall: float
    worst: float
    cpu_here: float  # this process: the web app or the claim, in Python
    cpu_server: float  # PostgreSQL's processes


# Not a page: what the scheduler does after each round, so no reader waits for it.
COUNTING = "dashboard figures counted (the scheduler, after each round)"


def timed(action: Callable[[], object], repeat: int, server: PostgresServer) -> Timing:
    """Milliseconds of ``repeat`` runs (after one warm-up run): wall and CPU time."""
    action()
    walls, here, there = [], [], []
    for _ in range(repeat):
        started, cpu, server_cpu = time.perf_counter(), time.process_time(), server_cpu_ms(server)
        action()
        walls.append((time.perf_counter() - started) * 1000)
        here.append((time.process_time() - cpu) * 1000)
        there.append(server_cpu_ms(server) - server_cpu)
    return Timing(statistics.median(walls), max(walls), statistics.median(here),
                  statistics.median(there))


def rss_mb(pid: int | None = None) -> float:
    """Resident memory of a process (this one by default), in MB."""
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    """Fill, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--links", type=int, default=1_000_000)
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    server = PostgresServer()
    try:
        server.start()
        url = server.url(server.create_database("scale"))
        folder = Path(tempfile.mkdtemp(prefix="archiver-scale-"))
        settings = load_settings(env={}, overrides={"data_dir": str(folder),
                                                    "database_url": url})
        initialise(settings)
        with Archive.open(settings) as archive:
            started = time.perf_counter()
            load(archive, fill_sql(n_posts=args.posts, n_links=args.links,
                                   n_captures=args.links, n_checks=args.links))
            with archive.db.engine.connect() as opened:
                opened.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                    "VACUUM ANALYZE")
            print(f"filled {args.links:,} links, {args.posts:,} posts, {args.links:,} captures "
                  f"and {args.links:,} checks in {time.perf_counter() - started:.0f} s")
            from web import create_app

            client = create_app(settings, archive).test_client()
            rows: list[tuple[str, Timing]] = []

            def claim(kind: WorkKind) -> Callable[[], object]:
                return lambda: claim_due(archive, kind, settings["health.batch_size"])

            def page(path: str) -> Callable[[], object]:
                def get() -> object:
                    response = client.get(path)
                    assert response.status_code == 200, (path, response.status_code)
                    return response
                return get

            def count_figures() -> object:
                with archive.db.session() as session:
                    return figures.refresh(session)

            def new_link() -> None:
                with archive.db.session() as session:
                    session.add(Link(url="https://new.example/", url_key="example,new)/",
                                     host="new.example"))

            shown_as_old: list[bool] = []

            def dashboard_after_a_change() -> object:
                response: Any = page("/")()
                shown_as_old.append(b'id="figures-age"' in response.data)
                return response

            for label, action in (
                (f"claim {settings['health.batch_size']} due links to check",
                 claim(WorkKind.CHECK)),
                (f"claim {settings['health.batch_size']} due links to capture",
                 claim(WorkKind.CAPTURE)),
                (COUNTING, count_figures),
                ("dashboard / (figures current)", page("/")),
                ("dashboard / after a new link (figures as of the last count)",
                 dashboard_after_a_change),
                ("links page /links?state=dead", page("/links?state=dead")),
                ("links page /links?after=<middle>", page(f"/links?after={args.links // 2}")),
                ("links page /links?state=alive&after=<middle>",
                 page(f"/links?state=alive&after={args.links // 2}")),
                ("links page /links?state=dead&before=<middle>",
                 page(f"/links?state=dead&before={args.links // 2}")),
                ("links page /links?domain=site7.example", page("/links?domain=site7.example")),
                ("posts page /posts", page("/posts")),
                ("a post's page /posts/777", page("/posts/777")),
                ("API /api/links?state=failing", page("/api/links?state=failing")),
            ):
                if action is dashboard_after_a_change:
                    new_link()  # the stored figures are no longer current
                rows.append((label, timed(action, args.repeat, server)))
            width = max(len(label) for label, _ in rows)
            print(f"{'what':<{width}}  median ms  worst ms  CPU ms here  CPU ms PostgreSQL  "
                  "target")
            for label, timing in rows:
                verdict = ("background" if label == COUNTING
                           else "ok" if timing.wall < TARGET_MS else "SLOW")
                print(f"{label:<{width}}  {timing.wall:9.1f}  {timing.worst:8.1f}  "
                      f"{timing.cpu_here:11.1f}  {timing.cpu_server:17.0f}  {verdict}")
            print(f"after the new link the dashboard showed stored figures with their time "
                  f"in {sum(shown_as_old)} of {len(shown_as_old)} renders (counted again for "
                  f"the page when counting takes under {figures.LIVE_BELOW_MS:.0f} ms)")
            here = rss_mb()
            print(f"memory: this process (web app + claims + SQLAlchemy) peak {here:.0f} MB "
                  f"({'ok' if here < TARGET_MB else 'OVER'} against {TARGET_MB} MB)")
        # A scheduler-like process on its own: one check claim in a fresh interpreter.
        code = ("from archiver.archive import Archive; from archiver.jobs import WorkKind, "
                "claim_due; from archiver.settings import load_settings; import resource; "
                f"s = load_settings(env={{}}, overrides={{'data_dir': {str(folder)!r}, "
                f"'database_url': {url!r}}}); a = Archive.open(s); "
                "claim_due(a, WorkKind.CHECK, 200); "
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)")
        peak = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        mb = int(peak.stdout.strip().splitlines()[-1])
        print(f"memory: a claiming process on its own peaks at {mb} MB "
              f"({'ok' if mb < TARGET_MB else 'OVER'})")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
