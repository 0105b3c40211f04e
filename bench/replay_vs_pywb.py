"""Replay benchmark: our ``archiver web`` against pywb, on the same WARC files, in one run.

Builds a corpus of article pages on loopback web sites (127.0.0.1 .. 127.0.0.4): each page is
20-60 KB of HTML with navigation, citations and figures, and a few requisites (the site's style
sheet, which ``@import``s a second one, a logo, one to three images of its own, sometimes a
shared photo on the last host, the site's script).  It captures them with our capture pipeline
(``run_due``, in this process) into a new data folder, then serves that archive two ways:

* ours: ``archiver --config … web --port P`` as its own process, as a user runs it (waitress
  in ``web.workers`` processes, 2 by default, of 4 threads each), with its cache of rendered
  documents (``web.replay_cache_bytes``);
* ours-uncached: the same with ``web.replay_cache_bytes = 0``, so every request reads and
  rewrites its record: what a page costs the first time it is asked for;
* pywb: ``wayback -p P -b 127.0.0.1`` from the interoperability environment, on a collection
  made with ``wb-manager init`` / ``wb-manager add`` from the same WARC files.

Both are asked for the bare rewritten document of every page, at its exact capture time:
``/web/<ts>mp_/<url>`` from ours and ``/<coll>/<ts>mp_/<url>`` from pywb, which both answer
200 with the HTML rewritten into the archive (pywb adds its head insert), no redirect.  After a
warm-up (every page once, checked: 200 and a non-empty body; then a few seconds of load), a
load generator keeps ``--concurrency`` keep-alive connections busy for ``--duration`` seconds,
rotating through the pages: ``wrk`` (Debian's; it is installed with apt-get when missing and we
are root) with a Lua script, or, with ``--loadgen python``, threads with ``http.client``.

It prints the first (cold) pass over every page, then pages per second, p50 / p90 / p99
latency, the ratio ours / pywb (target: 3x pywb's pages per second, p99 under 50 ms), the CPU
time of each server process during its run and the load average.  ``--profile DIR`` adds one
run of ours under py-spy and prints where its time goes.  This is a benchmark, not a test: it
prints figures and exits 0.

Usage: python bench/replay_vs_pywb.py [--pages 200] [--duration 15] [--repeat 3]

Only loopback addresses are contacted; every tool run and wait is bounded by a timeout.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import random
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from common import archiver_argv, clean_env, fmt, version_of
from sqlalchemy import select
from werkzeug.wrappers import Request, Response

from archiver.archive import Archive, initialise
from archiver.clock import utcnow, warc_timestamp
from archiver.demo.fixtureweb import Site
from archiver.jobs import WorkKind, run_due
from archiver.models import Capture, Link
from archiver.settings import Settings, load_settings
from archiver.urls import host_of, url_key

ROOT = Path(__file__).resolve().parent.parent
INTEROP_BIN = Path(os.environ.get("ARCHIVER_INTEROP_BIN", ROOT / ".venv-interop" / "bin"))
BENCH_BIN = Path(os.environ.get("BENCH_BIN", ROOT / ".venv-bench" / "bin"))
TARGET_RATIO = 3.0  # our pages per second over pywb's
TARGET_P99_MS = 50.0
HOSTS = 4
COLLECTION = "bench"
PROSE = (
    "an author cites a page to show what was said and when the page moves or disappears the "
    "citation points nowhere an archive keeps a copy with its images and style sheets so that "
    "readers can still see what was meant replay serves the copy with every address rewritten "
    "into the archive so nothing is fetched from the live web links rot at a steady rate and "
    "most references in old posts no longer point where they did"
)
WORDS = PROSE.split()
TICKS = os.sysconf("SC_CLK_TCK")

# The load generator for wrk: rotate through the page paths (one per line of the file given
# after "--"), count answers that are not 200 or have an empty body, print one RESULT line.
WRK_SCRIPT = r"""
local paths = {}
local n = 0
bad = 0
empty = 0
function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then paths[#paths + 1] = line end
  end
  n = tonumber(args[2]) or 0
end
function request()
  n = n % #paths + 1
  return wrk.format("GET", paths[n])
end
function response(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
  if body == nil or #body == 0 then empty = empty + 1 end
end
local threads = {}
function setup(thread)
  threads[#threads + 1] = thread
  thread:set("bad", 0)
  thread:set("empty", 0)
end
function done(summary, latency, requests)
  local b, e = 0, 0
  for _, t in ipairs(threads) do
    b = b + t:get("bad")
    e = e + t:get("empty")
  end
  local err = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d bytes=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
    "non200=%d empty=%d errors=%d\n",
    summary.requests, summary.duration, summary.bytes, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max, b, e,
    err.connect + err.read + err.write + err.timeout))
end
"""
WRK_RESULT = re.compile(r"RESULT (.*)")


# -- shared helpers (bench/replay_fidelity.py uses them too) ---------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(path: Path, data: Path, extra: str = "") -> Settings:
    """A settings file for a new data folder that may capture from loopback; initialised."""
    path.write_text(
        f'data_dir = "{data}"\n{extra}'
        "[fetch]\n"
        "allow_private_networks = true\n"
        'per_host_delay = "0s"\n'
        "per_host_concurrency = 4\n", encoding="utf-8")
    settings = load_settings(path, env={})
    initialise(settings)
    return settings


def capture_all(settings: Settings, urls: list[str]) -> tuple[Counter[str], float, list[Path]]:
    """Capture ``urls`` with our pipeline: (outcomes, seconds, the WARC files, closed)."""
    now = utcnow()
    with Archive.open(settings) as archive:
        with archive.db.session() as session:
            session.add_all([Link(url=url, url_key=url_key(url), host=host_of(url),
                                  next_capture_at=now) for url in urls])
        started = time.monotonic()
        summary = run_due(archive, WorkKind.CAPTURE, everything=True)
        seconds = time.monotonic() - started
        archive.store.close()
        files = [archive.store.path_of(name) for name in archive.store.files()]
    return Counter(summary.outcomes), seconds, files


def capture_stamps(settings: Settings, urls: list[str]) -> dict[str, str]:
    """The 14-digit timestamp of each URL's (latest) response record."""
    with Archive.open(settings) as archive, archive.db.session() as session:
        rows = session.execute(select(Capture.url, Capture.captured_at)
                               .where(Capture.url.in_(urls),
                                      Capture.record_type == "response")
                               .order_by(Capture.captured_at)).all()
    return {url: warc_timestamp(moment) for url, moment in rows}


def wait_for_http(base: str, process: subprocess.Popen[bytes], log: Path,
                  timeout: float = 60) -> None:
    """Wait until ``base`` answers anything over HTTP; raise if the process died first."""
    host, _, port = base.removeprefix("http://").partition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            connection = http.client.HTTPConnection(host, int(port), timeout=2)
            connection.request("GET", "/")
            connection.getresponse().read()
            connection.close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                said = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
                why = (f"exited with {process.returncode}" if process.poll() is not None
                       else f"did not answer within {timeout:.0f}s")
                raise ServerError(f"{log.stem} {why}: {' | '.join(said[-3:])}") from None
            time.sleep(0.2)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate a server we started (and kill it if it does not go)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class ServerError(RuntimeError):
    """A server we started did not come up."""


@dataclass
class Server:
    """A server process we started."""

    name: str
    base: str
    process: subprocess.Popen[bytes]
    log: Path
    prefix: str  # path before "<ts>mp_/<url>"

    def path(self, stamp: str, url: str) -> str:
        return f"{self.prefix}{stamp}mp_/{url}"


@contextmanager
def running_ours(config: Path, work: Path, command: str = "",
                 name: str = "ours") -> Iterator[Server]:
    """``archiver --config <config> web --port P``: our web UI as a user starts it."""
    port = free_port()
    log = work / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*archiver_argv(command), "--config", str(config), "web", "--host", "127.0.0.1",
             "--port", str(port)], cwd=work, env=clean_env(), stdout=out,
            stderr=subprocess.STDOUT)
    server = Server(name, f"http://127.0.0.1:{port}", process, log, "/web/")
    try:
        wait_for_http(server.base, process, log)
        yield server
    finally:
        stop(process)


@contextmanager
def running_pywb(files: list[Path], work: Path) -> Iterator[Server]:
    """pywb's ``wayback`` on a collection holding ``files``."""
    folder = work / "pywb"
    folder.mkdir()
    for argv in (["init", COLLECTION], ["add", COLLECTION, *map(str, files)]):
        subprocess.run([str(INTEROP_BIN / "wb-manager"), *argv], cwd=folder, check=True,
                       capture_output=True, timeout=300, env=clean_env())
    port = free_port()
    log = work / "pywb.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(INTEROP_BIN / "wayback"), "-p", str(port),
                                    "-b", "127.0.0.1"], cwd=folder, env=clean_env(),
                                   stdout=out, stderr=subprocess.STDOUT)
    server = Server("pywb", f"http://127.0.0.1:{port}", process, log, f"/{COLLECTION}/")
    try:
        wait_for_http(server.base, process, log)
        yield server
    finally:
        stop(process)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def process_cpu(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` and its descendants."""
    total = 0.0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
    return total


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- the corpus ------------------------------------------------------------------------------


class CorpusSite:
    """A loopback site serving a fixed table of resources."""

    def __init__(self, address: str) -> None:
        self.site = Site(f"corpus-{address}", host=address)
        self.site.fallback = self._answer
        self.assets: dict[str, tuple[bytes, str]] = {}

    def add(self, path: str, body: bytes | str, content_type: str) -> str:
        """Serve ``body`` at ``path``; return its absolute URL."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.assets[path] = (data, content_type)
        return self.site.url(path)

    def _answer(self, request: Request) -> Response:
        asset = self.assets.get(request.path)
        if asset is None:
            return Response(b"<h1>Not Found</h1>", status=404,
                            content_type="text/html; charset=utf-8")
        body, content_type = asset
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        return Response(body, content_type=content_type,
                        headers={"ETag": etag, "Cache-Control": "max-age=3600"})


def _text(rng: random.Random, size: int) -> str:
    return " ".join(rng.choices(WORDS, k=max(1, size // 6)))[:size]


def _rules(rng: random.Random, size: int) -> str:
    rules, length = [], 0
    while length < size:
        rule = (f".c{rng.randrange(10**6)} {{ margin: {rng.randrange(40)}px; "
                f"color: #{rng.randrange(16**6):06x}; line-height: 1.{rng.randrange(10)} }}\n")
        rules.append(rule)
        length += len(rule)
    return "".join(rules)


def build_corpus(sites: list[CorpusSite], pages: int, seed: int) -> tuple[list[str], Counter[str]]:
    """Fill the (started) sites with ``pages`` articles; return their URLs and sizes by kind."""
    rng = random.Random(seed)
    cdn = sites[-1]
    sizes: Counter[str] = Counter()
    shared = [cdn.add(f"/shared/photo-{i}.jpg", rng.randbytes(rng.randint(4000, 20000)),
                      "image/jpeg") for i in range(6)]
    font = cdn.add("/fonts/text.woff2", b"wOF2" + rng.randbytes(12000), "font/woff2")
    for site in sites:
        site.add("/static/base.css", _rules(rng, 2000) + "@font-face { font-family: Text; "
                 f'src: url("{font}") format("woff2") }}\nbody {{ font-family: Text }}\n',
                 "text/css")
        site.add("/static/site.css", '@import url("/static/base.css");\n'
                 "header { background: url(/static/header.png) no-repeat }\n"
                 + _rules(rng, 2500), "text/css")
        site.add("/static/header.png", rng.randbytes(6000), "image/png")
        site.add("/static/logo.png", rng.randbytes(3000), "image/png")
        site.add("/static/app.js", "document.documentElement.className = 'js';\n",
                 "text/javascript")
    urls = []
    for n in range(pages):
        site = sites[n % len(sites)]
        images = [site.add(f"/img/{n}-{i}.jpg", rng.randbytes(rng.randint(3000, 15000)),
                           "image/jpeg").removeprefix(site.site.base_url)
                  for i in range(rng.randint(1, 3))]
        if rng.random() < 0.4:
            images.append(rng.choice(shared))
        nav = " ".join(f'<a href="/category/{c}/">{c}</a>' for c in
                       ("news", "essays", "notes", "links", "archive", "about", "contact",
                        "projects", "talks", "reading", "photos", "colophon"))
        head = (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
                f"<title>Article {n}</title>\n"
                '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
                '<link rel="stylesheet" href="/static/site.css">\n'
                f'<link rel="canonical" href="/articles/{n}.html">\n'
                '<link rel="alternate" type="application/rss+xml" href="/feed.xml">\n'
                '<script src="/static/app.js" defer></script>\n</head>\n<body>\n'
                f'<header><a href="/"><img src="/static/logo.png" alt="logo"></a>'
                f"<nav>{nav}</nav></header>\n<main><article><h1>Article {n}</h1>\n")
        target = rng.randint(20_000, 60_000)
        body = [head]
        written = len(head)
        figures = list(images)
        while written < target:
            words = _text(rng, rng.randint(500, 1200)).split()
            for _ in range(rng.randint(1, 3)):  # citations and cross references in the text
                at = rng.randrange(len(words))
                if rng.random() < 0.6:
                    href = (f"https://www.example.{rng.choice(('org', 'com', 'net'))}/"
                            f"{rng.choice(WORDS)}/{rng.randrange(10**6)}.html")
                else:
                    href = f"/articles/{rng.randrange(pages)}.html"
                words[at] = f'<a href="{href}">{words[at]}</a>'
            chunk = f"<p>{' '.join(words)}</p>\n"
            if figures and rng.random() < 0.3:
                chunk += (f'<figure><img src="{figures.pop()}" alt="figure" loading="lazy">'
                          f"<figcaption>{_text(rng, 80)}</figcaption></figure>\n")
            body.append(chunk)
            written += len(chunk)
        body += [f'<figure><img src="{src}" alt="figure"></figure>\n' for src in figures]
        footer = " ".join(f'<a href="/tags/{w}.html">{w}</a>' for w in rng.sample(WORDS, 10))
        body.append(f"</article></main>\n<footer>{footer}</footer>\n</body></html>\n")
        html = "".join(body)
        sizes["html"] += len(html)
        urls.append(site.add(f"/articles/{n}.html", html, "text/html; charset=utf-8"))
    return urls, sizes


# -- load generation -------------------------------------------------------------------------


@dataclass
class Load:
    """One timed load run against one server."""

    server: str
    requests: int = 0
    seconds: float = 0.0
    bytes: int = 0
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    non200: int = 0
    empty: int = 0
    errors: int = 0
    server_cpu: float = 0.0
    loadgen_cpu: float = 0.0
    other_cpu: float = 0.0  # CPU of the other server while this one was loaded (should be ~0)
    load_before: float = 0.0
    load_after: float = 0.0
    note: str = ""

    @property
    def rate(self) -> float | None:
        return self.requests / self.seconds if self.seconds and self.requests else None


def ensure_wrk() -> str | None:
    """Path of wrk, installed from Debian's packages when missing (we run as root)."""
    found = shutil.which("wrk")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    print("installing wrk with apt-get ...", file=sys.stderr, flush=True)
    try:
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], capture_output=True,
                       timeout=300, check=False)
    except subprocess.TimeoutExpired:
        return None
    return shutil.which("wrk")


def run_wrk(wrk: str, server: Server, paths_file: Path, script: Path, concurrency: int,
            duration: float, load: Load) -> None:
    argv = [wrk, "-t1", f"-c{concurrency}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
            "-s", str(script), server.base, "--", str(paths_file), "0"]
    try:
        completed = subprocess.run(argv, capture_output=True, text=True,
                                   timeout=duration + 60, check=False)
    except subprocess.TimeoutExpired:
        load.note = "wrk did not finish (killed)"
        return
    match = WRK_RESULT.search(completed.stdout)
    if match is None:
        load.note = f"no result from wrk (exit {completed.returncode}): {completed.stderr[-300:]}"
        return
    values = {key: int(value) for key, value in
              (item.split("=") for item in match.group(1).split())}
    load.requests = values["requests"]
    load.seconds = values["duration_us"] / 1e6
    load.bytes = values["bytes"]
    load.p50_ms, load.p90_ms, load.p99_ms, load.max_ms = (
        values[key] / 1000 for key in ("p50_us", "p90_us", "p99_us", "max_us"))
    load.non200, load.empty, load.errors = values["non200"], values["empty"], values["errors"]


def run_python_load(server: Server, paths: list[str], concurrency: int, duration: float,
                    load: Load) -> None:
    """``concurrency`` threads, each with one keep-alive connection, until the deadline."""
    host, _, port = server.base.removeprefix("http://").partition(":")
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    counts = Counter[str]()
    lock = threading.Lock()
    started = time.monotonic()
    deadline = started + duration

    def worker(slot: int) -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        index = slot
        mine = Counter[str]()
        while time.monotonic() < deadline:
            path = paths[index % len(paths)]
            index += concurrency
            began = time.perf_counter()
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException):
                mine["errors"] += 1
                connection.close()
                connection = http.client.HTTPConnection(host, int(port), timeout=10)
                continue
            latencies[slot].append(time.perf_counter() - began)
            mine["bytes"] += len(body)
            mine["non200"] += response.status != 200
            mine["empty"] += not body
        connection.close()
        with lock:
            counts.update(mine)

    threads = [threading.Thread(target=worker, args=(slot,), daemon=True)
               for slot in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=duration + 30)
    load.seconds = time.monotonic() - started
    every = sorted(x for chunk in latencies for x in chunk)
    load.requests = len(every)
    load.bytes, load.non200 = counts["bytes"], counts["non200"]
    load.empty, load.errors = counts["empty"], counts["errors"]
    if every:
        def pick(q: float) -> float:
            return every[min(len(every) - 1, int(q * len(every)))] * 1000
        load.p50_ms, load.p90_ms, load.p99_ms = pick(0.50), pick(0.90), pick(0.99)
        load.max_ms = every[-1] * 1000


@dataclass
class Bench:
    servers: dict[str, Server]
    paths: dict[str, list[str]]  # per server: the request paths, in rotation order
    work: Path
    concurrency: int
    duration: float
    wrk: str | None
    script: Path | None = None
    loads: dict[str, list[Load]] = field(default_factory=dict)

    def drive(self, name: str, duration: float) -> Load:
        """One load run against server ``name``."""
        server = self.servers[name]
        others = [s.process.pid for n, s in self.servers.items() if n != name]
        load = Load(name, load_before=os.getloadavg()[0])
        cpu_before = process_cpu(server.process.pid)
        other_before = sum(process_cpu(pid) for pid in others)
        loadgen_before = children_cpu()
        if self.wrk and self.script:
            paths_file = self.work / f"paths-{name}.txt"
            run_wrk(self.wrk, server, paths_file, self.script, self.concurrency, duration, load)
        else:
            run_python_load(server, self.paths[name], self.concurrency, duration, load)
        load.server_cpu = process_cpu(server.process.pid) - cpu_before
        load.other_cpu = sum(process_cpu(pid) for pid in others) - other_before
        load.loadgen_cpu = children_cpu() - loadgen_before
        load.load_after = os.getloadavg()[0]
        return load


@dataclass
class FirstPass:
    """Every page asked for once, one at a time: the cold figures (nothing cached yet)."""

    good: int = 0  # answers 200 with a body
    bytes: int = 0
    problems: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # seconds
    server_cpu: float = 0.0

    def summary(self) -> str:
        """p50 / p99 latency and server CPU per page, as one phrase."""
        if not self.latencies:
            return "no answers"
        every = sorted(self.latencies)
        def pick(q: float) -> float:
            return every[min(len(every) - 1, int(q * len(every)))] * 1000
        return (f"one at a time: p50 {pick(0.5):.1f} ms, p99 {pick(0.99):.1f} ms, server CPU "
                f"{1000 * self.server_cpu / len(every):.2f} ms per page")


def check_every_page(server: Server, paths: list[str]) -> FirstPass:
    """GET every path once on one keep-alive connection and check for a 200 with a body; this
    is the cold pass (it fills the server's caches and the WARC files' pages)."""
    host, _, port = server.base.removeprefix("http://").partition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    found = FirstPass()
    cpu_before = process_cpu(server.process.pid)
    for path in paths:
        began = time.perf_counter()
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            found.latencies.append(time.perf_counter() - began)
        except (OSError, http.client.HTTPException) as exc:
            found.problems.append(f"{path}: {exc!r}")
            connection.close()
            connection = http.client.HTTPConnection(host, int(port), timeout=30)
            continue
        found.bytes += len(body)
        if response.status == 200 and body:
            found.good += 1
        else:
            found.problems.append(f"{path}: {response.status}, {len(body)} bytes")
    found.server_cpu = process_cpu(server.process.pid) - cpu_before
    connection.close()
    return found


# -- profiling -------------------------------------------------------------------------------


def profile_ours(bench: Bench, folder: Path, py_spy: Path, duration: float) -> None:
    """One more load run of ours with py-spy attached (``--gil``: only the GIL holder's
    stacks); print the functions holding it most, inclusive and self."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = folder / "ours-gil.txt"
    pid = bench.servers["ours"].process.pid
    spy = subprocess.Popen(  # --subprocesses: the workers are the parent's children
        [str(py_spy), "record", "--pid", str(pid), "--subprocesses", "--gil", "--rate", "200",
         "--duration", str(round(duration) + 1), "--format", "raw", "-o", str(raw)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    load = bench.drive("ours", duration)
    try:
        spy.wait(timeout=duration + 60)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.wait(timeout=10)
    print(f"\nours under py-spy (--gil, 200 Hz): {fmt_rate(load.rate)} pages/s, p99 "
          f"{fmt(load.p99_ms, 1)} ms; stacks in {raw}")
    if not raw.exists():
        print("  py-spy wrote nothing (is ptrace allowed?)")
        return
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            own[frames[-1]] += count
    if not total:
        print("  no samples")
        return
    def share(prefix: str) -> float:
        return 100 * max((count for frame, count in inclusive.items()
                          if frame.startswith(prefix)), default=0) / total

    io_loop = share("loop (waitress/wasyncore.py")
    around = share("WSGITask.execute") - share("replay (web/views/replay.py")
    print(f"  {total} samples with the GIL held. Around the replay view: waitress's main loop "
          f"(sockets, request parsing) {io_loop:.1f}%, Flask and waitress's task outside the "
          f"view {around:.1f}%.")
    print("  our functions, inclusive:")
    plumbing = ("main (archiver/cli.py", "run_safely", "web (web/commands.py",
                "serve_web (", "serve_with_scheduler (")
    shown = 0
    for frame, count in inclusive.most_common():
        if ("(archiver/" in frame or "(web/" in frame) and not frame.startswith(plumbing):
            print(f"  {100 * count / total:5.1f}%  {frame}")
            shown += 1
            if shown == 18:
                break
    print("  self (any code):")
    for frame, count in own.most_common(12):
        print(f"  {100 * count / total:5.1f}%  {frame}")


# -- report ----------------------------------------------------------------------------------


def fmt_rate(value: float | None) -> str:
    return fmt(value, 1)


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, ["-" * w for w in widths], *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True))
              .rstrip())


def median_load(loads: list[Load]) -> Load:
    done = sorted((x for x in loads if x.rate), key=lambda x: x.rate or 0.0)
    return done[(len(done) - 1) // 2] if done else loads[-1]


def report(bench: Bench, names: list[str]) -> None:
    headers = ["server", "pages/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "requests",
               "not 200", "empty", "errors", "KB/page", "server CPU s", "CPU ms/page",
               "loadgen CPU s", "load avg", "note"]
    rows = []
    chosen = {}
    for name in names:
        runs = bench.loads.get(name, [])
        if not runs:
            continue
        load = chosen[name] = median_load(runs)
        flag = ""
        if name.startswith("ours") and load.p99_ms is not None:
            flag = " ok" if load.p99_ms < TARGET_P99_MS else " SLOW"
        rows.append([
            name, fmt_rate(load.rate), fmt(load.p50_ms, 1), fmt(load.p90_ms, 1),
            fmt(load.p99_ms, 1) + flag, fmt(load.max_ms, 1), str(load.requests),
            str(load.non200), str(load.empty), str(load.errors),
            fmt(load.bytes / load.requests / 1024, 1) if load.requests else "-",
            fmt(load.server_cpu, 1),
            fmt(1000 * load.server_cpu / load.requests, 2) if load.requests else "-",
            fmt(load.loadgen_cpu, 1), f"{load.load_before:.1f} -> {load.load_after:.1f}",
            load.note])
    print_table(headers, rows)
    print()
    for name in names:
        runs = bench.loads.get(name, [])
        if len(runs) > 1:
            print(f"{name}: pages/s per run {' '.join(fmt_rate(r.rate) for r in runs)}; "
                  f"p99 ms per run {' '.join(fmt(r.p99_ms, 1) for r in runs)} "
                  "(the table shows the median run by pages/s)")
        for run in runs:
            if run.other_cpu > 0.5:
                print(f"  note: the other server used {run.other_cpu:.1f} s CPU during a "
                      f"{name} run")
    pywb = chosen.get("pywb")
    for name in ("ours", "ours-uncached"):
        ours = chosen.get(name)
        if not (ours and pywb and ours.rate and pywb.rate):
            continue
        ratio = ours.rate / pywb.rate
        print(f"\n{name} / pywb pages per second: {ratio:.2f}x "
              f"({'meets' if ratio >= TARGET_RATIO else 'misses'} the {TARGET_RATIO:g}x target); "
              f"{name} p99 {fmt(ours.p99_ms, 1)} ms "
              f"({'meets' if (ours.p99_ms or 1e9) < TARGET_P99_MS else 'misses'} the "
              f"{TARGET_P99_MS:g} ms target); pywb p99 {fmt(pywb.p99_ms, 1)} ms")
        if ours.requests and pywb.requests:
            print(f"server CPU per page: {name} "
                  f"{1000 * ours.server_cpu / ours.requests:.2f} ms, "
                  f"pywb {1000 * pywb.server_cpu / pywb.requests:.2f} ms")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=200, help="archived pages (default 200)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="connections kept busy at once (default 8)")
    parser.add_argument("--duration", type=float, default=15,
                        help="seconds of each measured run (default 15)")
    parser.add_argument("--warmup", type=float, default=3,
                        help="seconds of unmeasured load before the first run (default 3)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="measured runs per server, taken in turn; the median is shown")
    parser.add_argument("--servers", default="ours,ours-uncached,pywb",
                        help="subset of: ours, ours-uncached (web.replay_cache_bytes = 0), pywb")
    parser.add_argument("--loadgen", choices=("wrk", "python"), default="wrk",
                        help="wrk (default; installed with apt-get if missing) or Python threads")
    parser.add_argument("--seed", type=int, default=7, help="corpus seed")
    parser.add_argument("--profile", type=Path, default=None,
                        help="folder: after the measured runs, one run of ours under py-spy "
                             "(from .venv-bench or BENCH_BIN); prints where the time goes")
    parser.add_argument("--archiver-cmd", default="",
                        help="command that runs our CLI (default: the archiver next to this "
                             "Python)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="build the data folder and pywb collection here and keep them")
    args = parser.parse_args(argv)
    if not 1 <= args.pages <= 5000 or not 1 <= args.concurrency <= 256:
        parser.error("need 1..5000 pages and 1..256 connections")
    if not 1 <= args.duration <= 600 or not 0 <= args.warmup <= 120:
        parser.error("need a duration of 1..600 s and a warm-up of 0..120 s")
    if not 1 <= args.repeat <= 20:
        parser.error("need 1..20 repeats")
    args.server_names = [s.strip() for s in args.servers.split(",") if s.strip()]
    if not args.server_names or set(args.server_names) - {"ours", "ours-uncached", "pywb"}:
        parser.error("--servers takes ours, ours-uncached and pywb")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = ensure_wrk() if args.loadgen == "wrk" else None
    if args.loadgen == "wrk" and wrk is None:
        print("wrk is not available: using the Python load generator", file=sys.stderr)
    if "pywb" in args.server_names and not (INTEROP_BIN / "wayback").exists():
        print(f"{INTEROP_BIN / 'wayback'} is missing (`make interop-tools`): pywb skipped")
        args.server_names.remove("pywb")
    sites = [CorpusSite(f"127.0.0.{i + 1}") for i in range(HOSTS)]
    scratch = None
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        work = args.keep
    else:
        scratch = tempfile.TemporaryDirectory(prefix="bench-replay-")
        work = Path(scratch.name)
    try:
        for site in sites:
            site.site.start()
        urls, sizes = build_corpus(sites, args.pages, args.seed)
        config = work / "archiver.toml"
        settings = write_config(config, work / "data")
        outcomes, seconds, files = capture_all(settings, urls)
        for site in sites:
            site.site.stop()  # from now on nothing may come from the fixture web
        stamps = capture_stamps(settings, urls)
        missing = [u for u in urls if u not in stamps]
        print(f"{args.pages} pages on {HOSTS} loopback hosts, HTML "
              f"{sizes['html'] / args.pages / 1024:.1f} KB on average; captured in "
              f"{seconds:.1f} s: {dict(outcomes)}; {len(files)} WARC file(s), "
              f"{sum(f.stat().st_size for f in files) / 1e6:.1f} MB")
        if missing:
            print(f"{len(missing)} pages have no response record and are left out")
        pages = [u for u in urls if u in stamps]
        print(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start; "
              f"concurrency {args.concurrency}, {args.duration:g} s per run, {args.repeat} "
              f"run(s) per server in turn; load generator: "
              f"{version_of([wrk, '--version']) if wrk else 'Python threads + http.client'}")
        pywb_version = version_of([str(INTEROP_BIN / "python"), "-c",
                                   "import pywb; print('pywb', pywb.__version__)"])
        print(f"servers: ours = `archiver web` ({settings['web.workers']} waitress processes of "
              "4 threads, rendered documents cached); ours-uncached = the same with "
              f"web.replay_cache_bytes = 0; pywb = {pywb_version} `wayback` (gevent), default "
              "config (framed replay; mp_ is the bare document)")
        print()
        script = None
        if wrk:
            script = work / "rotate.lua"
            script.write_text(WRK_SCRIPT, encoding="utf-8")
        with ExitStack() as stack:
            servers: dict[str, Server] = {}
            uncached = work / "archiver-uncached.toml"
            uncached.write_text(config.read_text(encoding="utf-8")
                                + "[web]\nreplay_cache_bytes = 0\n", encoding="utf-8")
            starters = {"ours": lambda: running_ours(config, work, args.archiver_cmd),
                        "ours-uncached": lambda: running_ours(uncached, work, args.archiver_cmd,
                                                              "ours-uncached"),
                        "pywb": lambda: running_pywb(files, work)}
            for name in args.server_names:
                try:  # a server that does not start is reported; the other one still runs
                    servers[name] = stack.enter_context(starters[name]())
                except (ServerError, subprocess.SubprocessError, OSError) as exc:
                    print(f"{name}: not measured: {exc}")
            bench = Bench(servers=servers, paths={}, work=work, concurrency=args.concurrency,
                          duration=args.duration, wrk=wrk, script=script)
            for name, server in servers.items():
                rotation = random.Random(args.seed + 1).sample(pages, len(pages))
                bench.paths[name] = [server.path(stamps[u], u) for u in rotation]
                (work / f"paths-{name}.txt").write_text("\n".join(bench.paths[name]) + "\n",
                                                        encoding="utf-8")
                first = check_every_page(server, bench.paths[name])
                print(f"{name}: {first.good}/{len(pages)} pages answered 200 with a body on the "
                      f"first (cold) pass, {first.bytes / len(pages) / 1024:.1f} KB per page; "
                      f"{first.summary()}")
                for problem in first.problems[:5]:
                    print(f"  {problem}")
                if args.warmup:
                    bench.drive(name, args.warmup)
            print()
            for attempt in range(args.repeat):
                for name in servers:
                    print(f"run {attempt + 1}/{args.repeat}: {name} ...", file=sys.stderr,
                          flush=True)
                    bench.loads.setdefault(name, []).append(bench.drive(name, args.duration))
            report(bench, list(servers))
            if args.profile and "ours" in servers:
                py_spy = BENCH_BIN / "py-spy"
                if py_spy.exists():
                    profile_ours(bench, args.profile, py_spy, args.duration)
                else:
                    print(f"\n{py_spy} is missing: no profile")
        print(f"\nload average {os.getloadavg()[0]:.1f} at the end. CPU s = user+system time "
              "of the server's process during the measured run; loadgen CPU s = the same for "
              "the load generator (wrk or, with --loadgen python, not counted).")
    finally:
        for site in sites:
            site.site.stop()
        if scratch is not None:
            scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
