"""A throwaway Redis server for the tests: the system's ``redis-server`` on a free loopback
port, nothing written to disk, stopped at the end.

Import the fixture into a test module (``from tests.redis_server import redis_url  # noqa:
F401``).  When redis-server is missing the tests fail (they never skip):
``.ci/install-system-tools`` installs it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pg import free_port

INSTALL_HINT = ("run `.ci/install-system-tools` (as root, or with sudo) to install Debian's "
                "`redis-server` package")
START_TIMEOUT_S = 20


def _answers(port: int) -> bool:
    """Whether a Redis server on ``port`` answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on loopback, without persistence."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(f"redis-server is not installed: {INSTALL_HINT}")
        self.binary = binary
        self.folder = Path(tempfile.mkdtemp(prefix="archiver-redis-"))
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start on a free port and wait until it answers (a few tries if a port was taken)."""
        for _attempt in range(3):
            self.port = free_port()
            self.process = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(self.folder),
                 "--logfile", str(self.folder / "redis.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline and self.process.poll() is None:
                if _answers(self.port):
                    return
                time.sleep(0.05)
            self.stop_process()
        raise RuntimeError(f"redis-server did not start: see {self.folder / 'redis.log'}")

    def stop_process(self) -> None:
        """Stop the server process (its data is thrown away)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def stop(self) -> None:
        """Stop the server and delete its folder."""
        try:
            self.stop_process()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: int = 0) -> str:
        """Redis URL of ``database`` on this server."""
        return f"redis://127.0.0.1:{self.port}/{database}"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A Redis server for the whole test session."""
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """URL of an empty Redis database for one test (flushed afterwards)."""
    import redis

    url = redis_server.url()
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
        yield url
        client.flushdb()
    finally:
        client.close()
