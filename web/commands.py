"""CLI commands that need the web app: ``serve``, ``web`` and ``demo`` (added to ``archiver``
through the ``archiver.commands`` entry point, so the core never imports this package)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from archiver.archive import Archive
from archiver.cli import Context, pass_context, run_safely


def _web_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--port", type=int, help="Port (default: web.port).")(func)
    return click.option("--host", help="Address (default: web.host).")(func)


def serve_web(archive: Archive, host: str | None, port: int | None,
              announce: Callable[[str], None]) -> None:
    """Serve the web UI with waitress until interrupted."""
    from waitress import create_server

    from web import create_app

    app = create_app(archive.settings, archive)
    server = create_server(app, host=host or archive.settings["web.host"],
                           port=archive.settings["web.port"] if port is None else port,
                           threads=8)
    announce(f"serving on http://{server.effective_host}:{server.effective_port}/")
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


def serve_with_scheduler(archive: Archive, host: str | None, port: int | None,
                         announce: Callable[[str], None]) -> None:
    """The embedded default: web UI and scheduler in one process."""
    from archiver.scheduler import build_scheduler

    scheduler = build_scheduler(archive, blocking=False)
    scheduler.start()
    try:
        serve_web(archive, host, port, announce)
    finally:
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
@pass_context
@run_safely
def web(ctx: Context, host: str | None, port: int | None) -> None:
    """The web UI alone (run `archiver scheduler` as its own process)."""
    with ctx.open() as archive:
        serve_web(archive, host, port, ctx.say)


@click.command()
@_web_options
@click.option("--no-serve", is_flag=True, help="Archive and check, print the report, exit.")
@pass_context
@run_safely
def demo(ctx: Context, host: str | None, port: int | None, no_serve: bool) -> None:
    """Archive a bundled fixture blog on loopback and serve the UI (no network needed)."""
    from archiver.demo.run import prepare_demo

    with prepare_demo(ctx.settings, say=ctx.say) as archive:
        if not no_serve:
            serve_with_scheduler(archive, host, port, ctx.say)
