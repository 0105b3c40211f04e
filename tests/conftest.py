"""Shared fixtures: settings over a temporary data folder, an initialised archive, loopback
web sites on port 0 and the Flask test client. Nothing here talks to anything but loopback."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from archiver.archive import Archive, initialise
from archiver.demo.fixtureweb import Site
from archiver.discover import add_source, discover
from archiver.net.politeness import HostLimiter, TurnAbandoned
from archiver.settings import Settings, load_settings

TEST_OVERRIDES = {
    "fetch.allow_private_networks": True,  # the fixture web lives on loopback
    "fetch.per_host_delay": "0s",
    "fetch.timeout": "5s",
    "health.retry_backoff": "0s",
    "health.failure_spacing": "0s",
}


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings for tests: no environment, a temporary data folder, loopback allowed."""
    values: dict[str, object] = {"data_dir": str(data_dir), **TEST_OVERRIDES}
    values.update({key.replace("__", "."): value for key, value in overrides.items()})
    return load_settings(env={}, overrides=values)


def read_request_head(conn: socket.socket) -> bytes:
    """What a raw test server reads of a request: its head, up to the blank line (b"" when the
    client closed before sending it all)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    return data.split(b"\r\n\r\n", 1)[0]


Answer = Callable[[str, str], bytes]  # (method, path) -> the exact bytes to send


def response(status: bytes, extra: bytes = b"", body: bytes = b"") -> bytes:
    """A complete HTTP/1.1 answer that closes its connection."""
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: text/html\r\nConnection: close\r\n"
            + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body)


class RawSite:
    """A loopback server that writes the exact bytes ``answer(method, path)`` returns, so
    headers can hold what no framework would send (raw UTF-8, stray latin-1 bytes); it keeps
    each request head exactly as it arrived in ``heads``."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.heads: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            head = read_request_head(conn)
            if not head:
                return
            self.heads.append(head + b"\r\n\r\n")
            method, path, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            answer = self.answer(method, path)
            if method == "HEAD":
                answer = answer.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
            with contextlib.suppress(OSError):  # the client gave up (its deadline cut it)
                conn.sendall(answer)

    def close(self) -> None:
        self.listener.close()


class InFlight:
    """Counts the requests a test server is answering, and the most at once (``peak``)."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def one(self) -> Iterator[None]:
        """Count one request for as long as it is being answered."""
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            yield
        finally:
            with self._lock:
                self.now -= 1


def assert_a_stop_ends_the_wait(limiter: HostLimiter, host: str = "busy.example",
                                hold: Callable[[], contextlib.AbstractContextManager[Any]]
                                | None = None) -> None:
    """With one of ``host``'s slots held (by ``hold``, else by ``limiter``), a request waiting
    for its turn (a slot, or the delay since the last start) gives up as soon as its stop is
    set: TurnAbandoned, not the request."""
    stop = threading.Event()
    outcome: list[BaseException | None] = []

    def wait_for_a_turn() -> None:
        try:
            with limiter.slot(host, stop):
                outcome.append(None)  # the turn came: a request would be made now
        except BaseException as exc:  # the test reads what it was
            outcome.append(exc)

    with (hold or (lambda: limiter.slot(host)))():
        waiter = threading.Thread(target=wait_for_a_turn)
        waiter.start()
        waiter.join(0.4)
        assert waiter.is_alive() and outcome == []  # waiting for the host
        stopped_at = time.monotonic()
        stop.set()
        waiter.join(2)
        assert not waiter.is_alive()
        assert time.monotonic() - stopped_at < 0.5
    assert len(outcome) == 1 and isinstance(outcome[0], TurnAbandoned), outcome


def post(title: str, url: str, text: str, date: str | None = "2008-06-14") -> str:
    """A Markdown post: front matter (title, date, canonical URL), then ``text``."""
    dated = f"date: {date}\n" if date else ""
    return f"---\ntitle: {title}\n{dated}url: {url}\n---\n{text}\n"


def discover_posts(archive: Archive, folder: Path, *posts: str) -> None:
    """Write ``posts`` into ``folder`` (1.md, 2.md, ...), add it as a source and discover it."""
    folder.mkdir(parents=True, exist_ok=True)
    for number, text in enumerate(posts, 1):
        (folder / f"{number}.md").write_text(text, encoding="utf-8")
    add_source(archive, str(folder))
    discover(archive)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
def archive(settings: Settings) -> Iterator[Archive]:
    initialise(settings)
    with Archive.open(settings) as opened:
        yield opened


@pytest.fixture
def site() -> Iterator[Site]:
    with Site("test") as running:
        yield running


@pytest.fixture
def app(archive: Archive) -> Flask:
    from web import create_app

    flask_app = create_app(archive.settings, archive)
    flask_app.config["TESTING"] = True
    return flask_app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(scope="session")
def s3() -> Iterator[Any]:
    """A real S3-compatible server on loopback for this test session (tests/s3_server.py);
    each test makes its own bucket."""
    pytest.importorskip("boto3", reason="the s3 extra (boto3) is part of the dev install")
    from tests.s3_server import S3Server

    with S3Server() as server:
        yield server


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
INSTALL_HINT = ("the browser tests need Debian's Chromium and the Python playwright package "
                "(`make test` installs both; never `playwright install`: the system browser "
                "is used)")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium (the system's), driven by Playwright."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"playwright is not installed: {INSTALL_HINT}")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: {INSTALL_HINT}")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


class Server(Site):
    """A Flask app on a real loopback HTTP server (``with Server(app) as server:``)."""

    def __init__(self, app: Flask) -> None:
        super().__init__("app", app=app)

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return self.base_url
