"""Capture benchmark: ``archiver capture`` against ``wget --warc-file --page-requisites``.

Starts one loopback web site on each of 127.0.0.1 .. 127.0.0.5 and builds a corpus of article
pages on them: each page is 10-60 KB of HTML with 3-6 images (a site logo and stock photos
shared across pages, the rest its own), the site's style sheet (which ``@import``s a second
one and has a ``url()`` background; the second one loads a web font from another host),
sometimes a style sheet of its own with a hero image, and the site's script.  Pages also link
to other pages and tag pages; those links are not requisites and no tool should follow them.

Then, in one run, it captures every page with its requisites with:

* wget, sequential (wget has one connection), into one WARC file;
* ``archiver capture --all`` as a subprocess, as a user runs it, on a new data folder whose
  ``links`` rows were inserted beforehand (not timed): once with one request at a time
  (``fetch.concurrency = 1``, ``fetch.per_host_concurrency = 1``: wget's politeness) and once
  with the default concurrency (8 in all, 2 per host);
* ``archiver capture --all`` again on the unchanged corpus, which should write revisit records.

It prints pages per second and the ratio to wget (target: at least 2x), the URLs each tool
captured (and any difference), the requests the sites saw, the bytes written to WARC, the size
of the revisit of an unchanged page (target: under 2 KB) and what ``warcio check`` and
``archiver verify`` say.  This is a benchmark, not a test: it prints figures and exits 0.

Plain loopback has no network latency, so it measures the CPU each tool spends per page;
``--latency 0.02`` delays every answer by 20 ms to stand for a network, where concurrency counts.

Usage: python bench/capture_vs_wget.py [--pages 300] [--repeat 1] [--latency 0]

Only loopback addresses are contacted; every tool run is bounded by a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
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
from sqlalchemy import select
from warcio.archiveiterator import ArchiveIterator

from archiver.archive import Archive
from archiver.models import Capture
from archiver.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 2.0  # our pages per second over wget's
REVISIT_TARGET = 2048  # bytes of the revisit record of an unchanged page
HOSTS = 5
TOOLS = ("wget", "sequential", "default")
SHARED_STOCK = 12  # stock photos on the last host, shared by all pages
TAGS = ("python", "archives", "links", "web", "preservation", "http")
LAST_MODIFIED = "Mon, 06 Jan 2025 10:00:00 GMT"
SUMMARY_RE = re.compile(r"capture: (\d+) of (\d+) links in ([\d.]+)s")
PROSE = (
    "the archive keeps a copy of every page an author cites so that readers can still see "
    "what was meant when the original moves or disappears link rot is common and most "
    "references in old posts no longer point where they did web pages change their text "
    "their images and their style sheets a faithful capture needs all of them with the "
    "headers the server sent and the time it sent them records are written in order and "
    "indexed by address and date replay rewrites addresses into the archive"
)
WORDS = PROSE.split()


# -- the corpus ------------------------------------------------------------------------------


@dataclass
class Asset:
    """One resource a site serves."""

    body: bytes
    content_type: str
    etag: str


class CorpusSite:
    """A loopback site serving a fixed table of resources and counting what it is asked for.

    Its answers run on the loop of ``LoopbackSites`` (one thread, so no lock); ``reset`` is
    called between runs, when nothing is in flight.
    """

    def __init__(self, address: str, latency: float = 0.0) -> None:
        self.host = address
        self.latency = latency
        self.base_url = ""  # http://address:port once served
        self.assets: dict[str, Asset] = {}
        self.hits: Counter[str] = Counter()
        self.bytes_sent = 0

    def reset(self) -> None:
        self.hits = Counter()
        self.bytes_sent = 0

    def url(self, path: str) -> str:
        """Absolute URL of ``path`` on this site."""
        return self.base_url + path

    def add(self, path: str, body: bytes | str, content_type: str) -> str:
        """Serve ``body`` at ``path``; return its absolute URL."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        self.assets[path] = Asset(data, content_type, etag)
        return self.url(path)

    async def answer(self, method: str, path: str,
                     headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """The asset at ``path`` (304 when its ETag is sent back), else a 404."""
        if self.latency > 0:
            await asyncio.sleep(self.latency)  # a network round trip and a server's think time
        asset = self.assets.get(path)
        self.hits[path] += 1
        if asset is None:
            return 404, {"Content-Type": "text/html; charset=utf-8"}, b"<h1>Not Found</h1>"
        fields = {"ETag": asset.etag, "Last-Modified": LAST_MODIFIED,
                  "Cache-Control": "max-age=3600"}
        if headers.get("if-none-match") == asset.etag:
            return 304, fields, b""
        if method == "GET":
            self.bytes_sent += len(asset.body)
        return 200, {"Content-Type": asset.content_type, **fields}, asset.body


@dataclass
class Corpus:
    sites: list[CorpusSite]
    pages: list[str]
    requisites: set[str]  # every requisite URL of every page (each once)
    requisites_per_page: list[int]
    not_requisites: set[str]  # URLs the pages link to that are not in the list (tags etc.)
    sizes: Counter[str] = field(default_factory=Counter)  # bytes by kind

    def reset(self) -> None:
        for site in self.sites:
            site.reset()

    def hits(self) -> Counter[str]:
        """Requests by absolute URL since the last reset."""
        found: Counter[str] = Counter()
        for site in self.sites:
            for path, count in site.hits.items():
                found[site.url(path)] += count
        return found


def _text(rng: random.Random, size: int) -> str:
    return " ".join(rng.choices(WORDS, k=max(1, size // 6)))[:size]


def _css_rules(rng: random.Random, size: int) -> str:
    rules = []
    length = 0
    while length < size:
        rule = (f".c{rng.randrange(10**6)} {{ margin: {rng.randrange(40)}px; "
                f"color: #{rng.randrange(16**6):06x}; font-size: {rng.randrange(10, 30)}px; "
                f"line-height: 1.{rng.randrange(10)} }}\n")
        rules.append(rule)
        length += len(rule)
    return "".join(rules)


def _script(rng: random.Random, size: int) -> str:
    lines = []
    length = 0
    while length < size:
        line = (f"function f{rng.randrange(10**6)}(x) {{ return x * {rng.randrange(100)} + "
                f"'{_text(rng, 30)}'.length; }}\n")
        lines.append(line)
        length += len(line)
    return "".join(lines)


def _image(rng: random.Random, low: int = 5_000, high: int = 100_000) -> bytes:
    return rng.randbytes(rng.randint(low, high))


def build_corpus(sites: list[CorpusSite], pages: int, seed: int) -> Corpus:
    """Fill the (started) sites with ``pages`` articles and their requisites."""
    rng = random.Random(seed)
    cdn = sites[-1]
    sizes: Counter[str] = Counter()
    stock = []
    for i in range(SHARED_STOCK):
        body = _image(rng)
        sizes["image"] += len(body)
        stock.append(cdn.add(f"/shared/stock-{i}.jpg", body, "image/jpeg"))
    font = cdn.add("/fonts/text.woff2", b"wOF2" + rng.randbytes(24_000), "font/woff2")
    site_requisites: dict[str, list[str]] = {}
    not_requisites: set[str] = set()
    for site in sites:
        base_css = (_css_rules(rng, 2500)
                    + f'@font-face {{ font-family: Text; src: url("{font}") format("woff2") }}\n')
        site_css = ('@import url("/static/base.css");\n'
                    "header { background: url(/static/header-bg.png) no-repeat }\n"
                    + _css_rules(rng, 3000))
        site_requisites[site.host] = [
            site.add("/static/site.css", site_css, "text/css"),
            site.add("/static/base.css", base_css, "text/css"),
            site.add("/static/header-bg.png", _image(rng, 5_000, 20_000), "image/png"),
            site.add("/static/app.js", _script(rng, 4000), "application/javascript"),
            site.add("/static/logo.png", _image(rng, 5_000, 12_000), "image/png"),
            font,
        ]
        for tag in TAGS:
            not_requisites.add(site.add(f"/tags/{tag}.html",
                                        f"<html><body><h1>{tag}</h1>{_text(rng, 2000)}"
                                        "</body></html>", "text/html; charset=utf-8"))
    page_urls: list[str] = []
    requisites: set[str] = set()
    per_page: list[int] = []
    for n in range(pages):
        site = sites[n % len(sites)]
        mine = list(site_requisites[site.host])
        slots = rng.randint(3, 6) - 1  # the logo is always one of the images
        hero = rng.random() < 1 / 3
        shared = rng.randint(0, min(2, slots - int(hero)))
        images = ["/static/logo.png", *rng.sample(stock, shared)]
        for i in range(slots - int(hero) - shared):
            body = _image(rng)
            sizes["image"] += len(body)
            images.append(site.add(f"/img/{n}-{i}.jpg", body, "image/jpeg").split(
                site.base_url, 1)[1])
        head = ['<link rel="stylesheet" href="/static/site.css">']
        if hero:
            hero_body = _image(rng)
            sizes["image"] += len(hero_body)
            mine.append(site.add(f"/img/{n}-hero.jpg", hero_body, "image/jpeg"))
            page_css = (f".hero {{ background-image: url(/img/{n}-hero.jpg) }}\n"
                        + _css_rules(rng, rng.randint(1000, 3000)))
            sizes["css"] += len(page_css)
            mine.append(site.add(f"/css/article-{n}.css", page_css, "text/css"))
            head.append(f'<link rel="stylesheet" href="/css/article-{n}.css">')
        head.append('<script src="/static/app.js"></script>')
        mine += [site.url(p) if p.startswith("/") else p for p in images]
        links = [f'<a href="/tags/{rng.choice(TAGS)}.html">tag</a>',
                 f'<a href="/articles/{(n + 7) % pages}.html">related</a>']
        archived = site.add(f"/articles/old-{n}.html", "<p>an older article</p>",
                            "text/html; charset=utf-8")
        not_requisites.add(archived)
        links.append(f'<a href="/articles/old-{n}.html">older</a>')
        target = rng.randint(10_000, 60_000)
        parts = [f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                 f"<title>Article {n}</title>\n" + "\n".join(head) + "</head>\n<body>"
                 f'<header><img src="/static/logo.png" alt="logo"><nav>{" ".join(links)}</nav>'
                 f"</header>\n<article{' class=hero' if hero else ''}><h1>Article {n}</h1>\n"]
        figures = [f'<figure><img src="{src}" alt="figure"></figure>\n' for src in images[1:]]
        paragraphs = max(1, target // 1500)
        every = max(1, paragraphs // (len(figures) + 1))
        written = sum(map(len, parts))
        for p in range(paragraphs):
            if figures and p % every == every - 1:
                parts.append(figures.pop())
            chunk = f"<p>{_text(rng, min(1500, max(100, target - written)))}</p>\n"
            parts.append(chunk)
            written += len(chunk)
        parts += figures
        parts.append("</article></body></html>\n")
        html = "".join(parts)
        sizes["html"] += len(html)
        page_urls.append(site.add(f"/articles/{n}.html", html, "text/html; charset=utf-8"))
        requisites.update(mine)
        per_page.append(len(set(mine)))
    for site in sites:
        for path, asset in site.assets.items():
            if path.startswith("/static/") or path.startswith("/fonts/"):
                sizes["css" if asset.content_type == "text/css" else "image"
                      if asset.content_type.startswith("image/") else "other"] += len(asset.body)
    return Corpus(sites=sites, pages=page_urls, requisites=requisites,
                  requisites_per_page=per_page, not_requisites=not_requisites, sizes=sizes)


# -- running the tools -----------------------------------------------------------------------


@dataclass
class Result:
    """One tool run."""

    tool: str
    seconds: float | None = None
    cpu: float | None = None
    site_cpu: float | None = None
    pages: int = 0  # page URLs found in its WARC files
    urls: set[str] = field(default_factory=set)  # every URL with a response or revisit record
    records: Counter[str] = field(default_factory=Counter)  # WARC records by type
    warc_bytes: int = 0
    requests: int = 0  # requests the sites saw
    unique_requests: int = 0
    unexpected: list[str] = field(default_factory=list)  # fetched but not a page or requisite
    inner_seconds: float | None = None
    note: str = ""
    runs: list[float] = field(default_factory=list)
    failed: bool = False

    @property
    def rate(self) -> float | None:
        return self.pages / self.seconds if self.seconds and self.pages else None


@dataclass
class Bench:
    corpus: Corpus
    work: Path
    timeout: float
    archiver_cmd: str = ""


def timed(bench: Bench, result: Result, argv: list[str],
          cwd: Path) -> subprocess.CompletedProcess[str] | None:
    """Run ``argv`` once, timing it and noting what the sites were asked; None on failure."""
    bench.corpus.reset()
    cpu_before = cpu_seconds(resource.RUSAGE_CHILDREN)
    site_cpu_before = cpu_seconds(resource.RUSAGE_SELF)
    started = time.monotonic()
    try:
        completed = subprocess.run(argv, cwd=cwd, env=clean_env(), capture_output=True,
                                   text=True, timeout=bench.timeout, check=False)
    except subprocess.TimeoutExpired:
        result.note = f"did not finish within {bench.timeout:.0f}s (killed)"
        result.failed = True
        return None
    except OSError as exc:
        result.note = f"could not start: {exc}"
        result.failed = True
        return None
    result.seconds = time.monotonic() - started
    result.cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - cpu_before
    result.site_cpu = cpu_seconds(resource.RUSAGE_SELF) - site_cpu_before
    hits = bench.corpus.hits()
    result.requests = sum(hits.values())
    result.unique_requests = len(hits)
    expected = set(bench.corpus.pages) | bench.corpus.requisites
    result.unexpected = sorted(url for url in hits
                               if url not in expected and not url.endswith("/robots.txt"))
    return completed


def read_warcs(result: Result, files: list[Path], pages: set[str]) -> None:
    """Count the records of ``files`` and collect the URLs they hold responses for."""
    for path in files:
        result.warc_bytes += path.stat().st_size
        with open(path, "rb") as handle:
            for record in ArchiveIterator(handle):
                result.records[record.rec_type] += 1
                if record.rec_type in ("response", "revisit"):
                    uri = record.rec_headers.get_header("WARC-Target-URI") or ""
                    result.urls.add(uri.strip("<>"))
    result.pages = len(result.urls & pages)


def ensure_wget() -> str | None:
    """The wget executable, installed with apt-get when missing and we may; None otherwise."""
    found = shutil.which("wget")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    print("wget is missing; installing it with apt-get ...", file=sys.stderr, flush=True)
    subprocess.run(["apt-get", "install", "-y", "-q", "wget"], capture_output=True,
                   timeout=600, check=False)
    return shutil.which("wget")


def run_wget(bench: Bench, attempt: int) -> Result:
    """wget on the list of pages: page requisites on any of the corpus hosts, nothing else."""
    wget = ensure_wget()
    if wget is None:
        return Result("wget", note="not installed (apt-get install wget)", failed=True)
    result = Result(version_of([wget, "--version"]).split(" built")[0] or "wget")
    folder = bench.work / f"wget-{attempt}"
    folder.mkdir()
    urls = folder / "urls.txt"
    urls.write_text("\n".join(bench.corpus.pages) + "\n", encoding="utf-8")
    hosts = ",".join(site.host for site in bench.corpus.sites)
    argv = [wget, "--no-config", "--warc-file", str(folder / "wget"),
            "--page-requisites", "--span-hosts", "--domains", hosts,
            "--no-verbose", "-e", "robots=off", "--no-proxy",
            "--tries", "3", "--timeout", "30",
            "--directory-prefix", str(folder / "files"), "--input-file", str(urls)]
    completed = timed(bench, result, argv, cwd=folder)
    if completed is None:
        return result
    if completed.returncode != 0:
        result.note = f"exit {completed.returncode}: {tail(completed.stderr)}"
    read_warcs(result, sorted(folder.glob("*.warc.gz")), set(bench.corpus.pages))
    return result


def prepare_ours(bench: Bench, name: str, concurrency: int, per_host: int,
                 processes: int) -> Path:
    """A new data folder with every page as a link due for capture; return its config file."""
    return links_archive(bench.work / name, bench.work / f"{name}.toml", bench.corpus.pages,
                         concurrency=concurrency, per_host=per_host, due="capture",
                         processes=processes)


def run_capture(bench: Bench, config: Path, label: str) -> tuple[Result, list[Path]]:
    """``archiver capture --all`` once; return the result and the WARC files it added."""
    settings = load_settings(config, env={})
    before = set(settings.warc_dir.glob("*.warc.gz"))
    result = Result(label)
    completed = timed(bench, result, [*archiver_argv(bench.archiver_cmd), "--config", str(config),
                                      "capture", "--all"], cwd=bench.work)
    added = sorted(set(settings.warc_dir.glob("*.warc.gz")) - before)
    if completed is None:
        return result, added
    match = SUMMARY_RE.search(completed.stderr + completed.stdout)
    if match:
        result.inner_seconds = float(match.group(3))
    if completed.returncode != 0:
        result.failed = True
        result.note = f"exit {completed.returncode}: {tail(completed.stderr)}"
    read_warcs(result, added, set(bench.corpus.pages))
    return result, added


def run_ours(bench: Bench, attempt: int, concurrency: int, per_host: int, processes: int,
             label: str) -> tuple[Result, Path]:
    config = prepare_ours(bench, f"ours-c{concurrency}-{attempt}", concurrency, per_host,
                          processes)
    result, _ = run_capture(bench, config, label)
    return result, config


# -- the revisit run and the checks ----------------------------------------------------------


@dataclass
class Revisits:
    result: Result
    page_lengths: list[int]  # Capture.length of each page's latest revisit record
    pages_not_revisits: int  # pages whose second capture is a full response again
    db_bytes: int  # growth of the database file


def run_revisit(bench: Bench, config: Path) -> Revisits:
    """Capture the unchanged corpus again and measure what the second capture cost."""
    settings = load_settings(config, env={})
    db_before = database_bytes(settings.data_dir)
    result, added = run_capture(bench, config, "archiver, revisit (2nd capture --all)")
    names = [path.name for path in added]
    pages = set(bench.corpus.pages)
    latest: dict[str, tuple[datetime, str, int]] = {}
    with Archive.open(settings) as archive, archive.db.session() as session:
        for url, captured_at, kind, length in session.execute(
                select(Capture.url, Capture.captured_at, Capture.record_type, Capture.length)
                .where(Capture.warc_file.in_(names))):
            if url in pages and (url not in latest or latest[url][0] < captured_at):
                latest[url] = (captured_at, kind, length)
    lengths = sorted(length for _, kind, length in latest.values() if kind == "revisit")
    return Revisits(result, lengths, len(latest) - len(lengths),
                    database_bytes(settings.data_dir) - db_before)


def database_bytes(data: Path) -> int:
    """Size of the SQLite database (with its journal files) in a data folder."""
    return sum(path.stat().st_size for path in data.glob("archiver.sqlite3*"))


def warcio_check(files: list[Path]) -> str:
    warcio = Path(sys.executable).parent / "warcio"
    argv = ([str(warcio)] if warcio.exists() else [sys.executable, "-m", "warcio.cli"])
    if not files:
        return "no files"
    try:
        completed = subprocess.run([*argv, "check", *map(str, files)], capture_output=True,
                                   text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired:
        return "timed out"
    except OSError as exc:
        return f"could not start: {exc}"
    if completed.returncode == 0:
        return f"ok ({len(files)} files)"
    return f"exit {completed.returncode}: {tail(completed.stdout + completed.stderr, 5)}"


def archiver_verify(bench: Bench, config: Path) -> str:
    try:
        argv = [*archiver_argv(bench.archiver_cmd), "--config", str(config), "verify"]
        completed = subprocess.run(argv, capture_output=True, text=True, timeout=bench.timeout,
                                   env=clean_env(), check=False)
    except subprocess.TimeoutExpired:
        return "timed out"
    except OSError as exc:
        return f"could not start: {exc}"
    text = tail(completed.stdout + completed.stderr, 3)
    return text if completed.returncode == 0 else f"exit {completed.returncode}: {text}"


# -- report ----------------------------------------------------------------------------------


def mb(size: int) -> str:
    return f"{size / 1e6:.1f}"


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, ["-" * w for w in widths], *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True))
              .rstrip())


def result_row(r: Result, corpus: Corpus, wget: Result | None) -> list[str]:
    requisites = len(r.urls) - r.pages
    ratio = (r.rate / wget.rate if r.rate and wget is not None and wget.rate
             and r is not wget else None)
    flag = "" if ratio is None else " ok" if ratio >= TARGET_RATIO else " SLOW"
    records = " ".join(f"{kind[:4]}:{count}" for kind, count in sorted(r.records.items())
                       if kind in ("response", "revisit", "request"))
    return [r.tool, fmt(r.seconds), f"{r.pages}/{len(corpus.pages)}",
            f"{requisites}/{len(corpus.requisites)}", fmt(r.rate, 1),
            fmt(ratio, 2, "x") + flag, records or "-", f"{r.requests} ({r.unique_requests})",
            mb(r.warc_bytes), fmt(r.cpu, 1),
            fmt(r.cpu * 1000 / r.pages if r.cpu is not None and r.pages else None, 0),
            fmt(r.site_cpu, 1), r.note]


def print_differences(results: list[Result], corpus: Corpus) -> None:
    expected = set(corpus.pages) | corpus.requisites
    for r in results:
        if r.seconds is None:
            continue
        missing = sorted(expected - r.urls)
        extra = sorted(r.urls - expected)
        line = f"{r.tool}: "
        line += ("every page and requisite captured" if not missing
                 else f"{len(missing)} missing, e.g. {', '.join(missing[:3])}")
        if extra:
            line += f"; {len(extra)} extra, e.g. {', '.join(extra[:3])}"
        if r.unexpected:
            line += (f"; FETCHED {len(r.unexpected)} non-requisites, e.g. "
                     f"{', '.join(r.unexpected[:3])}")
        else:
            line += "; fetched no linked page"
        print(line)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=300, help="article pages (default 300)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run every capture this many times, in turn; report the median")
    parser.add_argument("--seed", type=int, default=1, help="seed of the corpus (default 1)")
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds every answer is delayed, to stand for a network "
                             "(default 0: plain loopback)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="our fetch.concurrency in the default run (default 8, as shipped)")
    parser.add_argument("--per-host", type=int, default=2,
                        help="our fetch.per_host_concurrency in the default run (default 2)")
    parser.add_argument("--processes", type=int, default=0,
                        help="our capture.processes in the default run (default 0, as "
                             "shipped: one per core, at most 4)")
    parser.add_argument("--timeout", type=float, default=0,
                        help="kill a tool after this many seconds (default max(600, 2 x pages))")
    parser.add_argument("--archiver-cmd", default="",
                        help="command that runs our CLI (default: the archiver next to this "
                             "Python), e.g. under a profiler")
    parser.add_argument("--tools", default=",".join(TOOLS),
                        help="comma-separated subset of: " + ", ".join(TOOLS)
                             + " (the revisit run follows 'default')")
    parser.add_argument("--work-dir", default="",
                        help="keep the WARC files and data folders in a new folder in this "
                             "one instead of a temporary folder that is removed")
    args = parser.parse_args(argv)
    if args.pages < HOSTS or not 1 <= args.repeat <= 20 or args.latency < 0:
        parser.error(f"need at least {HOSTS} pages, 1..20 repeats and latency >= 0")
    args.tool_names = [name.strip() for name in args.tools.split(",") if name.strip()]
    unknown = [name for name in args.tool_names if name not in TOOLS]
    if unknown:
        parser.error(f"unknown tools: {', '.join(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_start = os.getloadavg()
    sites = [CorpusSite(f"127.0.0.{i + 1}", args.latency) for i in range(HOSTS)]
    server = LoopbackSites()
    try:
        server.start()
        for site in sites:
            site.base_url = server.add(site.host, site.answer)
        corpus = build_corpus(sites, args.pages, args.seed)
        per_page = corpus.requisites_per_page
        print(f"{len(corpus.pages)} article pages over {HOSTS} loopback hosts (127.0.0.1-"
              f"127.0.0.{HOSTS}); {len(corpus.requisites)} distinct requisites, "
              f"{min(per_page)}-{max(per_page)} per page (mean "
              f"{statistics.mean(per_page):.1f}, {sum(per_page)} in all)")
        print(f"corpus bytes: HTML {mb(corpus.sizes['html'])} MB, images "
              f"{mb(corpus.sizes['image'])} MB, CSS {corpus.sizes['css'] / 1e3:.0f} KB; "
              f"{os.cpu_count()} CPU cores, load average "
              + " ".join(f"{x:.2f}" for x in load_start) + " at start")
        print("every answer is delayed by " + (f"{args.latency * 1000:.0f} ms" if args.latency
                                               else "nothing (plain loopback)"))
        print()
        timeout = args.timeout or max(600.0, 2.0 * args.pages)
        with tempfile.TemporaryDirectory(prefix="bench-capture-") as scratch:
            work = Path(scratch)
            if args.work_dir:  # a new folder in it for every run, so nothing is reused
                work = Path(args.work_dir).resolve() / time.strftime("run-%Y%m%d-%H%M%S")
                work.mkdir(parents=True)
                print(f"files are kept in {work}")
            bench = Bench(corpus=corpus, work=work, timeout=timeout,
                          archiver_cmd=args.archiver_cmd)
            runs: dict[str, list[Result]] = {}
            configs: dict[str, Path] = {}
            seq_label = "archiver, sequential (1 in all, 1/host, 1 process)"
            processes = f", {args.processes} processes" if args.processes else ""
            default_label = (f"archiver, default ({args.concurrency} in all, "
                             f"{args.per_host}/host{processes})")
            labels = {"wget": "wget", "sequential": seq_label, "default": default_label}
            for attempt in range(args.repeat):
                for label in (labels[name] for name in TOOLS if name in args.tool_names):
                    print(f"run {attempt + 1}/{args.repeat}: {label} ...", file=sys.stderr,
                          flush=True)
                    try:
                        if label == "wget":
                            result = run_wget(bench, attempt)
                        elif label == seq_label:
                            result, configs[label] = run_ours(bench, attempt, 1, 1, 1, label)
                        else:
                            result, configs[label] = run_ours(
                                bench, attempt, args.concurrency, args.per_host,
                                args.processes, label)
                    except Exception as exc:  # a broken tool must not stop the others
                        result = Result(label, note=f"failed: {exc!r}", failed=True)
                    runs.setdefault(label, []).append(result)
            medians = {label: median_run(group) for label, group in runs.items()}
            results = list(medians.values())
            wget = medians.get("wget")
            if wget is not None and (wget.failed or not wget.rate):
                wget = None
            revisits = None
            if default_label in configs and not medians[default_label].failed:
                print("revisit run ...", file=sys.stderr, flush=True)
                revisits = run_revisit(bench, configs[default_label])
            load_end = os.getloadavg()
            report(bench, results, wget, revisits, configs, default_label, seq_label)
        print("load average after the timed runs: " + " ".join(f"{x:.2f}" for x in load_end))
    finally:
        server.stop()
    return 0


def report(bench: Bench, results: list[Result], wget: Result | None,
           revisits: Revisits | None, configs: dict[str, Path], default_label: str,
           seq_label: str) -> None:
    corpus = bench.corpus
    headers = ["tool", "wall s", "pages", "requisites", "pages/s", "vs wget", "WARC records",
               "requests (distinct)", "WARC MB", "CPU s", "CPU ms/page", "site CPU s", "note"]
    rows = [result_row(r, corpus, wget) for r in results]
    if revisits is not None:
        rows.append(result_row(revisits.result, corpus, wget))
    print_table(headers, rows)
    print()
    for r in results:
        if len(r.runs) > 1:
            print(f"{r.tool}: runs {' '.join(f'{s:.2f}' for s in r.runs)} s (median shown)")
        if r.inner_seconds is not None and r.seconds is not None:
            print(f"{r.tool}: its own timing of the run {r.inner_seconds:.2f} s; start-up and "
                  f"exit {r.seconds - r.inner_seconds:.2f} s")
    print_differences([*results] + ([revisits.result] if revisits else []), corpus)
    print()
    if wget is not None and wget.rate:
        for r in results:
            if r is not wget and r.rate:
                print(f"{r.tool} / wget: {r.rate / wget.rate:.2f}x pages per second "
                      f"({r.rate:.1f} / {wget.rate:.1f}); target {TARGET_RATIO:.0f}x"
                      + (f"; CPU per page {r.cpu / wget.cpu:.1f}x wget's"
                         if r.cpu and wget.cpu else ""))
    if revisits is not None:
        lengths = revisits.page_lengths
        second = revisits.result
        pages = max(1, second.pages)
        if lengths:
            print(f"revisit of an unchanged page: record length median "
                  f"{statistics.median(lengths):.0f} B (min {lengths[0]}, max {lengths[-1]}) "
                  f"over {len(lengths)} pages; target < {REVISIT_TARGET} B: "
                  + ("ok" if lengths[-1] < REVISIT_TARGET else "MISSED"))
        else:
            print("revisit of an unchanged page: no revisit records for the pages")
        if revisits.pages_not_revisits:
            print(f"  {revisits.pages_not_revisits} pages were stored as full responses again")
        print(f"second run added {second.warc_bytes} B of WARC ({second.warc_bytes / pages:.0f}"
              f" B per page, with its requisites' revisits and the request records) and "
              f"{revisits.db_bytes} B of database; {second.records['response']} full "
              f"responses, {second.records['revisit']} revisits")
    print()
    for label in (seq_label, default_label):
        config = configs.get(label)
        if config is None:
            continue
        warcs = sorted(load_settings(config, env={}).warc_dir.glob("*.warc.gz"))
        print(f"warcio check, {label}: {warcio_check(warcs)}")
        print(f"archiver verify, {label}: {archiver_verify(bench, config)}")
    for folder in sorted(bench.work.glob("wget-*"))[-1:]:
        print(f"warcio check, wget (for comparison): "
              f"{warcio_check(sorted(folder.glob('*.warc.gz')))}")
    print()
    print("wget: one connection, one request at a time (it has no concurrency option); "
          "-e robots=off. ours: `archiver capture --all` as a subprocess (Python start-up "
          "included), fetch.per_host_delay = 0s, robots.txt honoured (one request per host). "
          "requests = what the sites were asked in all (distinct URLs in brackets); CPU s = "
          "user+system time of the tool's processes; site CPU s = the same for the sites.")


if __name__ == "__main__":
    sys.exit(main())
