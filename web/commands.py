"""CLI commands that need the web app: ``serve``, ``web`` and ``demo`` (added to ``archiver``
through the ``archiver.commands`` entry point, so the core never imports this package)."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import socket
from collections.abc import Callable, Iterator
from typing import Any

import click

from archiver.archive import Archive
from archiver.cli import Context, pass_context, run_safely
from archiver.errors import ConfigError
from archiver.settings import MAX_WEB_WORKERS


def _web_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--port", type=click.IntRange(1, 65535),
                        help="Port, 1 to 65535 (default: web.port).")(func)
    return click.option("--host", help="Address (default: web.host).")(func)


@contextlib.contextmanager
def _listening(host: str, port: int) -> Iterator[None]:
    """Turn a failure to bind (a bad host, a port in use or not allowed) into a clear error."""
    try:
        yield
    except (OSError, ValueError) as exc:  # ValueError: a host name that cannot be encoded
        shown = f"[{host}]" if ":" in host else host
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        reason = reason.split(" (while attempting")[0]  # waitress repeats the address
        raise ConfigError(f"cannot listen on {shown}:{port}: {reason}") from exc


def serve_web(archive: Archive, host: str | None, port: int | None,
              announce: Callable[[str], None], workers: int = 1,
              listening: Callable[[], None] | None = None) -> None:
    """Serve the web UI with waitress until interrupted; ``workers`` > 1 forks that many
    processes sharing one listening socket (Python runs one thread at a time per process).
    ``listening`` is called once the socket is bound, before the first request is served."""
    from waitress import create_server

    from web import create_app

    settings = archive.settings
    address = (host or settings["web.host"], settings["web.port"] if port is None else port)
    if workers <= 1:
        app = create_app(settings, archive)
        with _listening(*address):
            server = create_server(app, host=address[0], port=address[1], threads=8)
        if listening is not None:
            listening()
        _freeze_startup_objects()
        announce(f"serving on http://{server.effective_host}:{server.effective_port}/")
        try:
            server.run()
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
        return
    with _listening(*address):
        listener = socket.create_server(address, reuse_port=False, backlog=1024)
    bound_host, bound_port = listener.getsockname()[:2]
    announce(f"serving on http://{bound_host}:{bound_port}/ with {workers} processes")
    archive.close()  # each process opens its own database pool and WARC store after fork
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # the child serves until it is told to stop
            signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
            with Archive.open(settings) as own:
                child = create_server(create_app(settings, own), sockets=[listener],
                                      threads=4)
                _freeze_startup_objects()
                with contextlib.suppress(KeyboardInterrupt):
                    child.run()
            os._exit(0)
        children.append(pid)
    signal.signal(signal.SIGTERM, _interrupt)  # stop the children too, then exit
    try:
        for pid in children:
            os.waitpid(pid, 0)
    except KeyboardInterrupt:
        pass
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        listener.close()


def _freeze_startup_objects() -> None:
    """Leave the objects made at start-up (modules, the app, SQLAlchemy's mappers: about
    100,000) out of every later garbage collection: a full collection walked them all, 20 to
    40 ms that landed on whichever request triggered it (replay's p99 latency)."""
    gc.collect()
    gc.freeze()


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def serve_with_scheduler(archive: Archive, host: str | None, port: int | None,
                         announce: Callable[[str], None]) -> None:
    """The embedded default: web UI and scheduler in one process."""
    from archiver.scheduler import build_scheduler

    scheduler = build_scheduler(archive, blocking=False)
    try:  # the scheduler starts only once the port is ours: a refused port does no work
        serve_web(archive, host, port, announce, listening=scheduler.start)
    finally:
        if scheduler.running:
            scheduler.shutdown(wait=False)


@click.command()
@_web_options
@pass_context
@run_safely
def serve(ctx: Context, host: str | None, port: int | None) -> None:
    """Web UI and scheduler in one process (the embedded default)."""
    with ctx.open() as archive:
        serve_with_scheduler(archive, host, port, ctx.say)


@click.command()
@_web_options
@click.option("--workers", type=click.IntRange(1, MAX_WEB_WORKERS),
              help=f"Processes serving requests, 1 to {MAX_WEB_WORKERS} (default: web.workers).")
@pass_context
@run_safely
def web(ctx: Context, host: str | None, port: int | None, workers: int | None) -> None:
    """The web UI alone (run `archiver scheduler` as its own process)."""
    with ctx.open() as archive:
        serve_web(archive, host, port, ctx.say,
                  workers=ctx.settings["web.workers"] if workers is None else workers)


@click.command()
@_web_options
@click.option("--no-serve", is_flag=True, help="Archive and check, print the report, exit.")
@pass_context
@run_safely
def demo(ctx: Context, host: str | None, port: int | None, no_serve: bool) -> None:
    """Archive a bundled fixture blog on loopback and serve the UI (no network needed)."""
    from archiver.demo.run import demo_announcer, prepare_demo, quiet_demo_logs

    quiet_demo_logs()
    with prepare_demo(ctx.settings, say=ctx.say) as archive:
        if not no_serve:
            serve_with_scheduler(archive, host, port, demo_announcer(archive, ctx.say))
