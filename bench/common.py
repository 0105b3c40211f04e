"""What the benchmarks share: a clean environment for the tools, how to run our CLI, a fresh
data folder of due links, light loopback web sites, version labels, CPU time, number formatting
and the median run."""

from __future__ import annotations

import asyncio
import os
import resource
import shlex
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from archiver.archive import Archive, initialise
from archiver.clock import utcnow
from archiver.models import Link
from archiver.settings import load_settings
from archiver.urls import host_of, url_key

R = TypeVar("R")
# (method, path, lower-cased request headers) -> (status, headers, body)
Answer = Callable[[str, str, dict[str, str]], Awaitable[tuple[int, dict[str, str], bytes]]]
REASONS = {200: "OK", 304: "Not Modified", 404: "Not Found"}


class LoopbackSites:
    """Web sites on loopback addresses, all served by one asyncio loop on a thread of its own.

    A benchmark's measuring instrument must not be what it measures: the fixture web's
    threaded WSGI server spends about a millisecond of CPU and a new thread on every
    connection, under one GIL for every site, which stretched a 100 ms answer by 10-15 ms when
    40 arrived at once (and so every tool's time).  Here a request, with its connection's
    accept and close, costs about 0.3 ms.  Each site answers one request per connection
    (``Connection: close``), as the fixture web did.
    """

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="loopback-sites",
                                        daemon=True)
        self._servers: list[asyncio.Server] = []

    def start(self) -> None:
        """Start the loop's thread (before adding sites)."""
        self._thread.start()

    def add(self, address: str, answer: Answer) -> str:
        """Serve ``answer`` on ``address`` at a free port; return the site's base URL."""
        async def listen() -> asyncio.Server:
            return await asyncio.start_server(
                lambda reader, writer: self._serve(answer, reader, writer), address, 0)

        server = asyncio.run_coroutine_threadsafe(listen(), self._loop).result(timeout=10)
        self._servers.append(server)
        return f"http://{address}:{server.sockets[0].getsockname()[1]}"

    def stop(self) -> None:
        """Close every site and end the loop."""
        async def close() -> None:
            for server in self._servers:
                server.close()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    @staticmethod
    async def _serve(answer: Answer, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            method, target, _version = request_line.split(" ", 2)
            headers = {name.strip().lower(): value.strip()
                       for name, _, value in (line.partition(":") for line in lines if line)}
            status, extra, body = await answer(method, target.split("?", 1)[0], headers)
            length = {} if status in (204, 304) else {"Content-Length": str(len(body))}
            fields = {**length, "Connection": "close", **extra}
            writer.write(f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n".encode()
                         + "".join(f"{k}: {v}\r\n" for k, v in fields.items()).encode("latin-1")
                         + b"\r\n" + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError,
                ConnectionError):
            pass  # a client that went away or sent garbage gets nothing
        finally:
            writer.close()


def clean_env() -> dict[str, str]:
    """The environment for the tools: no proxy, no archiver settings from the caller."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("ARCHIVER_") and "proxy" not in key.lower()}
    env["NO_PROXY"] = env["no_proxy"] = "*"
    return env


def archiver_argv(command: str = "") -> list[str]:
    """The command that runs our CLI: ``--archiver-cmd`` or the one next to this Python."""
    if command:  # paths in it are taken relative to the folder the benchmark was started in
        return [str(Path(word).absolute()) if "/" in word and Path(word).exists() else word
                for word in shlex.split(command)]
    executable = Path(sys.executable).parent / "archiver"
    return [str(executable)] if executable.exists() else [sys.executable, "-m", "archiver"]


def links_archive(data: Path, config: Path, urls: list[str], *, concurrency: int,
                  per_host: int, due: str, processes: int = 0) -> Path:
    """A new data folder holding ``urls`` as links due now for ``due`` ("check" or
    "capture"), and ``config`` written to run our CLI on it from loopback with no per-host
    delay (``processes``: capture.processes, 0 as shipped); return ``config``."""
    config.write_text(
        f'data_dir = "{data}"\n'
        "[fetch]\n"
        "allow_private_networks = true\n"
        f"concurrency = {concurrency}\n"
        f"per_host_concurrency = {per_host}\n"
        'per_host_delay = "0s"\n'
        "[capture]\n"
        f"processes = {processes}\n", encoding="utf-8")
    settings = load_settings(config, env={})
    initialise(settings)
    now = utcnow()
    with Archive.open(settings) as archive, archive.db.session() as session:
        session.add_all([Link(url=url, url_key=url_key(url), host=host_of(url),
                              **{f"next_{due}_at": now}) for url in urls])
    return config


def version_of(argv: list[str]) -> str:
    """First line a tool prints about its version (stdout, else stderr), or ''."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = out.stdout.strip() or out.stderr.strip()
    return text.splitlines()[0] if text else ""


def cpu_seconds(who: int) -> float:
    """User plus system CPU time of ``who`` (resource.RUSAGE_SELF or RUSAGE_CHILDREN)."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def tail(text: str, lines: int = 3) -> str:
    """The last lines of a tool's output, on one line."""
    return " | ".join(text.strip().splitlines()[-lines:])


def fmt(value: float | None, digits: int = 2, suffix: str = "") -> str:
    """A number for a table ('-' when there is none)."""
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def median_run(runs: list[Any]) -> Any:
    """The run with the median wall time (``.seconds``; a failed run if every run failed),
    with every run's time in its ``.runs``."""
    timed_runs = sorted((r for r in runs if r.seconds is not None),
                        key=lambda r: r.seconds or 0.0)
    if not timed_runs:
        return runs[-1]
    chosen = timed_runs[(len(timed_runs) - 1) // 2]
    chosen.runs = [r.seconds for r in runs if r.seconds is not None]
    return chosen
