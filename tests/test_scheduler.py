"""The scheduler calls the same runs as the CLI; `archiver web` serves as its own process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from sqlalchemy import func, select

from archiver.archive import Archive, initialise
from archiver.demo.fixtureweb import Site
from archiver.discover import add_source
from archiver.models import Capture, Check
from archiver.scheduler import build_scheduler
from tests.conftest import make_settings
from tests.test_interop import free_port


def test_scheduler_ticks_discover_capture_and_check(tmp_path: Path, site: Site) -> None:
    settings = make_settings(tmp_path / "data", scheduler__tick_interval="1s",
                             scheduler__discover_interval="1s")
    initialise(settings)
    refs = Site("refs").start()
    try:
        refs.page("/a", "<p>a</p>")
        posts = tmp_path / "posts"
        posts.mkdir()
        (posts / "p.html").write_text(f'<p><a href="{refs.url("/a")}">a</a></p>')
        with Archive.open(settings) as archive:
            add_source(archive, str(posts))
            scheduler = build_scheduler(archive, blocking=False)
            scheduler.start()
            try:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    with archive.db.session() as session:
                        checks = session.scalar(select(func.count(Check.id)))
                        captures = session.scalar(select(func.count(Capture.id)))
                    if checks and captures:
                        break
                    time.sleep(0.2)
            finally:
                scheduler.shutdown(wait=True)
        assert checks == 1 and captures == 1
    finally:
        refs.stop()


def test_web_command_serves_the_ui(tmp_path: Path) -> None:
    env = {**os.environ, "ARCHIVER_DATA_DIR": str(tmp_path / "data"),
           "ARCHIVER_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-c", "from archiver.cli import main; main()"]
    subprocess.run([*command, "init"], env=env, check=True, capture_output=True)
    port = free_port()
    process = subprocess.Popen([*command, "web", "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = requests.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except requests.ConnectionError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "web did not start"
                time.sleep(0.2)
        assert response.status_code == 200
        assert "Link health" in response.text
        assert response.headers["Server"] == "waitress"
        assert "with 2 processes" in process.stderr.read1().decode()  # type: ignore[union-attr]
    finally:
        process.terminate()
        process.wait(timeout=10)
    # Every serving process went away with the parent: the port is free again.
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
