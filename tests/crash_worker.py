"""Child process for the crash tests (run as a script, never imported by pytest).

``crash_worker.py cli ARGS...``: import the CLI, print ``ready`` (so the parent's timer starts
when the real work does, not during imports), then run ``archiver ARGS...``.

``crash_worker.py zygote ARGS...``: import everything once, then for each ``run`` line read from
stdin fork a child that runs ``archiver ARGS...`` and print ``started``; a ``kill`` line then
SIGKILLs the child unless it has ended, and prints its exit status (-9 when killed).  Only
the zygote, the child's parent, ever signals it, so a reused pid is never hit.

``crash_worker.py torn CONFIG COUNT [--no-index] [--hold]``: write COUNT exchanges (indexed,
unless ``--no-index``), then append the first half of one more record as a torn write, print
a JSON line with the file name and its sizes, and die by SIGKILL (or, with ``--hold``, wait to
be killed: a writer that is still alive).
"""

from __future__ import annotations

import importlib
import io
import json
import os
import signal
import sys
import time

from warcio.warcwriter import WARCWriter

from archiver.archive import Archive
from archiver.capture import index_locations
from archiver.clock import utcnow
from archiver.net.client import Exchange
from archiver.settings import load_settings


def exchange(number: int) -> Exchange:
    """A made-up exchange with an incompressible body."""
    url = f"http://example.test/torn/{number}"
    return Exchange(url=url, method="GET",
                    request_head=f"GET /torn/{number} HTTP/1.1\r\nHost: example.test\r\n\r\n"
                    .encode("ascii"),
                    status=200, reason="OK", http_version="HTTP/1.1",
                    headers=[("Content-Type", "text/plain")],
                    body=os.urandom(20_000) + f"record {number}\n".encode("ascii"),
                    started_at=utcnow(), elapsed=0.01, peer_ip="127.0.0.1")


def torn_member() -> bytes:
    """The first half of a gzip member holding a whole record: what a cut write leaves."""
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=True, warc_version="WARC/1.1")
    body = os.urandom(30_000)
    writer.write_record(writer.create_warc_record(
        "http://example.test/torn/cut", "resource", payload=io.BytesIO(body), length=len(body),
        warc_content_type="application/octet-stream"))
    data = buffer.getvalue()
    return data[:len(data) // 2]


def torn(config: str, count: int, index: bool, hold: bool) -> None:
    """Write records, then half a record, then die (or wait to be killed)."""
    archive = Archive.open(load_settings(config, env={}))
    locations = [archive.store.write_exchange(exchange(n)) for n in range(count)]
    if index:
        with archive.db.session() as session:
            index_locations(session, locations)
    path = archive.store.path_of(locations[-1].warc_file)
    good_end = path.stat().st_size
    with open(path, "ab") as handle:
        handle.write(torn_member())
        handle.flush()
        os.fsync(handle.fileno())
    print(json.dumps({"file": path.name, "good_end": good_end, "size": path.stat().st_size}),
          flush=True)
    if hold:
        while True:
            time.sleep(60)
    os.kill(os.getpid(), signal.SIGKILL)


def zygote(args: list[str]) -> None:
    """Fork a CLI run per ``run`` line; on ``kill``, SIGKILL it if still running; report."""
    from archiver.cli import cli

    for module in ("archiver.jobs", "archiver.warc.repair"):  # once here, not in every child
        importlib.import_module(module)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        pid = os.fork()
        if pid == 0:  # the child: one `archiver ARGS...` run
            os.dup2(2, 1)  # stdout is the zygote's channel to the test
            code = 1
            try:
                cli.main(args, prog_name="archiver")
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            finally:
                sys.stderr.flush()
                os._exit(code)
        print("started", flush=True)
        command = sys.stdin.readline().strip()  # "kill", or "wait" for it to end
        ended, status = os.waitpid(pid, os.WNOHANG)
        if not ended:
            if command == "kill":
                os.kill(pid, signal.SIGKILL)  # not yet reaped, so still our child
            _pid, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)


def main(argv: list[str]) -> None:
    """Dispatch on the mode."""
    mode, rest = argv[0], argv[1:]
    if mode == "cli":
        from archiver.cli import cli

        print("ready", flush=True)
        cli.main(rest, prog_name="archiver")
    elif mode == "zygote":
        zygote(rest)
    elif mode == "torn":
        flags = {arg for arg in rest if arg.startswith("--")}
        config, count = (arg for arg in rest if not arg.startswith("--"))
        torn(config, int(count), "--no-index" not in flags, "--hold" in flags)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
