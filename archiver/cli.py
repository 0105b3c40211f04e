"""The ``archiver`` command: thin wrappers over the library functions."""

from __future__ import annotations

import functools
import gc
import json
import os
import re
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from archiver import __version__
from archiver.archive import Archive, Stopping, initialise
from archiver.errors import ArchiverError, ConfigError, StorageError
from archiver.logs import configure_logging
from archiver.models import LinkState
from archiver.settings import Settings, format_duration, load_settings
from archiver.wording import plural

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from archiver.jobs import WorkKind


class Context:
    """What every command receives: the settings and output preferences."""

    def __init__(self, settings: Settings, quiet: bool) -> None:
        self.settings = settings
        self.quiet = quiet

    def open(self) -> Archive:
        """Open the archive, failing clearly when ``archiver init`` was not run."""
        return Archive.open(self.settings)

    def say(self, message: str) -> None:
        """Print a human message (to stderr, so stdout stays clean for data)."""
        if not self.quiet:
            click.echo(message, err=True)

    def progress(self, label: str) -> Callable[[int, int], None] | None:
        """A progress printer for terminals: done, rate and time left."""
        if self.quiet or not sys.stderr.isatty():
            return None
        started = time.monotonic()

        def show(done: int, total: int) -> None:
            elapsed = time.monotonic() - started
            rate = done / elapsed if elapsed > 0 else 0.0
            left = (total - done) / rate if rate > 0 else 0.0
            end = "\n" if done >= total else ""
            click.echo(f"\r{label}: {done}/{total}  {rate:.1f}/s  {left:.0f}s left   ",
                       err=True, nl=False)
            if end:
                click.echo("\r" + " " * 60 + "\r", err=True, nl=False)

        return show


pass_context = click.make_pass_decorator(Context)


def run_safely(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn ArchiverErrors, and what the machine refuses (files, folders, the database), into
    one clear line and an exit code, not a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ArchiverError as exc:
            _fail(str(exc), exc.exit_code)
        except ArgumentError as exc:  # database_url is not a database URL
            _fail(f"database_url: {exc}", ConfigError.exit_code)
        except SQLAlchemyError as exc:  # unreachable, locked, read-only, not a database
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            _fail(f"database: {reason}", StorageError.exit_code)
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            _fail(f"{exc.strerror or exc}{where}", StorageError.exit_code)

    return wrapper


def _not_empty(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
    """An option's value (a click callback), refused when it is an empty path."""
    if value is not None and str(value).strip() in ("", "."):  # Path("") is "."
        raise click.BadParameter("give a file name")
    return value


def _web_origin(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """An option's http(s) origin (a click callback; a path under it allowed), refused when it
    is not one."""
    if value is not None and not re.match(r"https?://[^/?#\s]+(/[^?#\s]*)?$", value, re.I):
        raise click.BadParameter(f"{value!r} is not an http(s) origin such as "
                                 "https://archive.example.org")
    return value


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


class PluginGroup(click.Group):
    """The command group, plus commands other packages contribute (the web UI adds serve, web
    and demo), loaded only when named, so core commands start without importing Flask."""

    def _plugins(self) -> dict[str, Any]:
        from importlib.metadata import entry_points  # 50 ms: only when a plugin is wanted

        return {entry.name: entry for entry in entry_points(group="archiver.commands")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Core and plugin command names."""
        return sorted({*super().list_commands(ctx), *self._plugins()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """A core command, or a plugin command loaded on demand."""
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in self._plugins():
            loaded: click.Command = self._plugins()[cmd_name].load()
            return loaded
        return command


@click.group(cls=PluginGroup)
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              envvar="ARCHIVER_CONFIG", help="TOML settings file (env ARCHIVER_CONFIG).")
@click.option("--data-dir", help="Override the data_dir setting.")
@click.option("--quiet", "-q", is_flag=True, help="Print only data and errors.")
@click.version_option(__version__, prog_name="archiver")
@click.pass_context
@run_safely
def cli(ctx: click.Context, config_file: str | None, data_dir: str | None, quiet: bool) -> None:
    """Keep the references a blog cites: discover links, archive them in WARC, watch them rot."""
    settings = load_settings(config_file, overrides={"data_dir": data_dir})
    configure_logging("WARNING" if quiet else settings["log_level"], settings["log_format"])
    ctx.obj = Context(settings, quiet)


@cli.command()
@pass_context
@run_safely
def init(ctx: Context) -> None:
    """Create the data folder and the database (runs migrations; safe to repeat)."""
    path = initialise(ctx.settings)
    ctx.say(f"initialised {path}")


@cli.command()
@click.argument("source")
@click.option("--site", "site_url", metavar="URL",
              help="The blog's own address, when its posts do not say it (a folder of posts "
                   "without url front matter): links to it are not references.")
@pass_context
@run_safely
def add(ctx: Context, source: str, site_url: str | None) -> None:
    """Register a feed, sitemap, post URL, WordPress export file or folder of posts."""
    from archiver.discover import add_source

    with ctx.open() as archive:
        added, new = add_source(archive, source, site_url)
    site = f" (the blog: {added.site_url})" if added.site_url else ""
    if added.kind == "feed" and added.location != source.strip():
        ctx.say(f"{source.strip()} is the blog's home page; it names its feed, which is "
                "read for the blog's posts")
    if new:
        ctx.say(f"added {added.kind} source #{added.id}: {added.location}{site}")
    else:
        ctx.say(f"already added as source #{added.id} ({added.kind}): {added.location}{site}")


@cli.command(name="discover")
@pass_context
@run_safely
def discover_command(ctx: Context) -> None:
    """Read every source, store new or changed posts and extract their links."""
    if _discover(ctx):
        sys.exit(1)


def _discover(ctx: Context) -> bool:
    """Read every source, printing each failure and the summary; True when one failed."""
    from archiver.discover import discover

    with ctx.open() as archive:
        summary = discover(archive, ctx.progress("discover"))
    for error in summary.errors:
        click.echo(f"error: {error}", err=True)
    ctx.say(summary.line())
    return bool(summary.errors)


def _work(ctx: Context, kind: str, everything: bool) -> tuple[bool, bool]:
    """Run one kind of work and return (stopped, some job failed); on SIGTERM or Ctrl-C,
    finish and keep the work in hand (exit 130 at once after Ctrl-C)."""
    from archiver.archive import stop_gracefully
    from archiver.jobs import WorkKind, check_round, run_due

    with ctx.open() as archive, stop_gracefully(archive.stopping) as stopping:
        if kind == WorkKind.CAPTURE:
            archive.prepare_store()  # repair files of writers that died, even if nothing is due
        progress = ctx.progress(kind)
        summary = (check_round(archive, everything=everything, progress=progress)
                   if kind == WorkKind.CHECK else
                   run_due(archive, WorkKind(kind), everything=everything, progress=progress))
        nothing_due = summary.claimed == 0 and not stopping.is_set()
        line = _nothing_due(archive, WorkKind(kind)) if nothing_due else summary.line()
    ctx.say(line)
    if stopping.is_set():
        ctx.say(f"{kind}: stopped by {stopping.signal_name or 'request'}: the work in hand was "
                "finished and kept, the rest left to a later run")
    _exit_if_interrupted(stopping)
    return stopping.is_set(), bool(summary.outcomes.get("error"))


def _nothing_due(archive: Archive, kind: WorkKind) -> str:
    """The line for a run that found no link due: when the next one is, and how to do all
    now (a summary of "0 of 0 links" told the author nothing)."""
    from sqlalchemy import func, select

    from archiver.clock import utcnow
    from archiver.jobs import LEASE_COLUMNS
    from archiver.models import link_is_ignored

    due_col = LEASE_COLUMNS[kind][0]
    with archive.db.session() as session:
        upcoming = session.scalar(select(func.min(due_col)).where(~link_is_ignored()))
    if upcoming is None:
        return (f"{kind}: nothing due now (no links to {kind} yet: `archiver add` a source, "
                "then `archiver discover`)")
    wait = upcoming - utcnow()
    if wait <= timedelta(0):  # due, but leased: another run claimed them first
        return (f"{kind}: nothing left to do now: the links due are in another run's hands "
                "(it finishes them, or gives them back when its lease runs out)")
    when = f"{upcoming:%Y-%m-%d %H:%M} UTC, in {_span(wait)}"
    return f"{kind}: nothing due now (next: {when}, or --all to do every link now)"


def _span(wait: timedelta) -> str:
    """A rough duration for people: 3d 4h, 5h 12m, 7m."""
    minutes = int(wait.total_seconds() // 60)
    days, hours, mins = minutes // 1440, minutes // 60 % 24, minutes % 60
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {mins}m" if hours else f"{mins}m"


def _exit_if_interrupted(stopping: Stopping) -> None:
    """Exit 130 after Ctrl-C, as an interrupted command does (a script must not take an
    interrupted check for a finished one); SIGTERM is a normal stop (exit 0)."""
    if stopping.signal_name == "SIGINT":
        sys.exit(130)


@cli.command()
@click.option("--all", "everything", is_flag=True, help="Capture every link now.")
@pass_context
@run_safely
def capture(ctx: Context, everything: bool) -> None:
    """Snapshot the links that are due (new links at once) into WARC."""
    if _work(ctx, "capture", everything)[1]:
        sys.exit(1)


@cli.command()
@click.option("--all", "everything", is_flag=True, help="Check every link now.")
@pass_context
@run_safely
def check(ctx: Context, everything: bool) -> None:
    """Check the health of the links that are due."""
    if _work(ctx, "check", everything)[1]:
        sys.exit(1)


@cli.command()
@pass_context
@run_safely
def run(ctx: Context) -> None:
    """Discover, capture and check once, as the scheduler does on its intervals; a failing
    source or job does not stop the rest, and makes the exit 1 (SIGTERM: exit 0)."""
    import threading

    from archiver.archive import stop_gracefully

    with stop_gracefully(threading.Event()) as stopping:
        failed = _discover(ctx)
        if stopping.is_set():
            ctx.say(f"run: stopped by {stopping.signal_name} after discovering")
            _exit_if_interrupted(stopping)
        else:
            for kind in ("capture", "check"):
                stopped, job_failed = _work(ctx, kind, False)
                failed = failed or job_failed
                if stopped:
                    break
    if failed:
        sys.exit(1)


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@click.option("--state", type=click.Choice([s.value for s in LinkState]))
@click.option("--domain", help="Only links to this domain (and its subdomains).")
@click.option("--post", "post_id", type=int, help="Only links cited by this post ID.")
@click.option("--uncited", is_flag=True,
              help="Also list the links no post cites any more (left out by default).")
@pass_context
@run_safely
def report(ctx: Context, fmt: str, state: str | None, domain: str | None,
           post_id: int | None, uncited: bool) -> None:
    """Print link health as a table, JSON or CSV; exit 1 when any link listed is dead."""
    from archiver.report import STATE_COLOURS, link_rows, links_query, render

    with ctx.open() as archive, archive.db.session() as session:
        if post_id is not None:
            # A mistyped ID must not pass a CI gate as a post without dead links.
            _require_post(session, post_id)
        # A link the author took out of every post no longer fails their CI gate.
        links = list(session.scalars(links_query(state, domain, post_id,
                                                 cited_only=not uncited)))
        rows = link_rows(session, links)
    on_terminal = sys.stdout.isatty()

    def colour(text: str, row_state: str) -> str:
        return click.style(text, fg=STATE_COLOURS.get(row_state)) if on_terminal else text

    click.echo(render(rows, fmt, colour))
    if any(row["state"] == "dead" for row in rows):
        sys.exit(1)


def _require_post(session: Session, post_id: int) -> None:
    """Refuse a ``--post`` ID that names no post (an option error, exit 2); one too large
    for the database is no post either."""
    from archiver.models import Post

    if not 0 < post_id < 2**63 or session.get(Post, post_id) is None:
        raise ConfigError(f"--post {post_id}: no such post")


@cli.command(name="thin-checks")
@pass_context
@run_safely
def thin_checks_command(ctx: Context) -> None:
    """Drop old checks that repeat the success before and after them (health.check_history);
    the scheduler does this daily."""
    from archiver.history import thin_checks

    with ctx.open() as archive:
        keep_for: float = archive.settings["health.check_history"]
        if keep_for <= 0:
            ctx.say("thin-checks: health.check_history is 0s, so every check is kept")
            return
        removed = thin_checks(archive.db, keep_for)
    ctx.say(f"thin-checks: {plural(removed, 'check')} older than "
            f"{format_duration(keep_for)} dropped (repeats of their neighbours)")


@cli.command()
@pass_context
@run_safely
def reindex(ctx: Context) -> None:
    """Rebuild the capture index from the WARC files alone."""
    from archiver.warc.indexer import reindex as rebuild

    with ctx.open() as archive:
        count = rebuild(archive)
    ctx.say(f"reindex: {count} records indexed")


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--url", "page_url", default="", help="The post's URL (relative links).")
@click.option("--base", callback=_web_origin,
              help="The archive's public origin (default: http://web.host:web.port).")
@click.option("--in-place", is_flag=True, help="Rewrite FILE itself.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              callback=_not_empty,
              help="Write to this file instead of stdout.")
@pass_context
@run_safely
def decorate(ctx: Context, file: Path, page_url: str, base: str | None, in_place: bool,
             output: Path | None) -> None:
    """Add Robust Links attributes (data-originalurl, data-versionurl, data-versiondate) to
    a post's HTML."""
    from archiver.decorate import decorate_with_archive

    if in_place and output is not None:
        raise click.UsageError("use --in-place or --output, not both")
    settings = ctx.settings
    base = base or f"http://{settings['web.host']}:{settings['web.port']}"
    # surrogateescape keeps every byte (line endings, non-UTF-8) exactly as it was.
    text = file.read_bytes().decode("utf-8", "surrogateescape")
    with ctx.open() as archive:
        decorated = decorate_with_archive(archive, text, page_url, base)
    data = decorated.encode("utf-8", "surrogateescape")
    target = file if in_place else output
    if target is None:
        click.echo(decorated, nl=False)
    else:
        temporary = target.with_name(target.name + ".tmp")
        temporary.write_bytes(data)
        os.replace(temporary, target)
    ctx.say(f"decorate: {decorated.count('data-versionurl=')} links marked")


@cli.command(name="hash-password")
@click.password_option(prompt="Author's password")
def hash_password(password: str) -> None:
    """Print a hash of the author's password for the web.admin_password_hash setting."""
    from werkzeug.security import generate_password_hash

    if len(password) < 10:
        click.echo("error: use at least 10 characters", err=True)
        sys.exit(2)
    hashed = generate_password_hash(password)
    click.echo(hashed)
    # On stderr, so that $(archiver hash-password) captures the hash alone.  Single quotes:
    # the hash contains "$", which a shell or a TOML basic string would read.
    click.echo(f"put it in your settings file as:\n[web]\nadmin_password_hash = '{hashed}'",
               err=True)


@cli.command(name="config")
@pass_context
def config_command(ctx: Context) -> None:
    """Print the effective settings (secrets redacted) as JSON."""
    click.echo(json.dumps(ctx.settings.redacted(), indent=2, sort_keys=True))


@cli.command()
@pass_context
@run_safely
def scheduler(ctx: Context) -> None:
    """The scheduler alone: discover, capture and check on their intervals (SIGTERM: exit 0)."""
    from archiver.archive import stop_gracefully
    from archiver.scheduler import build_scheduler

    with ctx.open() as archive, stop_gracefully(archive.stopping) as stopping:
        archive.prepare_store()
        ctx.say("scheduler running; Ctrl-C or SIGTERM to stop")
        running = build_scheduler(archive, blocking=False)
        running.start()
        while not stopping.event.wait(1.0):
            pass
        running.shutdown(wait=True)  # nothing new starts; the tick in hand finishes
    ctx.say("scheduler stopped: work in hand finished, the rest left to a later run")
    _exit_if_interrupted(stopping)


@cli.command()
@pass_context
@run_safely
def verify(ctx: Context) -> None:
    """Check every capture against its WARC record and digests; exit 1 on any problem."""
    from sqlalchemy import func, select

    from archiver.models import Capture
    from archiver.warc.verify import verify as check_archive

    with ctx.open() as archive:
        problems = check_archive(archive)
        with archive.db.session() as session:
            captures = session.scalar(select(func.count(Capture.id))) or 0
        files = len(archive.store.files())
    for problem in problems:
        click.echo(problem.line())
    ctx.say(f"verify: {plural(captures, 'capture')} in {plural(files, 'WARC file')}, "
            f"{plural(len(problems), 'problem')}")
    if problems:
        sys.exit(1)


@cli.command(name="import")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@pass_context
@run_safely
def import_command(ctx: Context, files: tuple[str, ...]) -> None:
    """Import .warc, .warc.gz and .wacz files made by other tools (all of them or none)."""
    from pathlib import Path

    from archiver.warc.importer import import_files

    with ctx.open() as archive:
        summary = import_files(archive, [Path(name) for name in files])
    for name in summary.skipped:
        ctx.say(f"already in the archive: {name}")
    ctx.say(summary.line())


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["wacz", "cdxj"]), default="wacz",
              show_default=True)
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              callback=_not_empty, help="File to write.")
@click.option("--post", "post_id", type=int, help="Only the references of this post ID.")
@pass_context
@run_safely
def export(ctx: Context, fmt: str, output: str, post_id: int | None) -> None:
    """Write a WACZ package or a CDXJ index of the archive, or of one post's references."""
    from pathlib import Path

    from archiver.warc.export import export_cdxj, export_wacz

    with ctx.open() as archive:
        if post_id is not None:
            with archive.db.session() as session:
                _require_post(session, post_id)
        write = export_wacz if fmt == "wacz" else export_cdxj
        summary = write(archive, Path(output), post_id)
    ctx.say(summary.line())


@cli.command()
@click.option("--concurrency", "-c", type=click.IntRange(1, 1000), default=4, show_default=True,
              help="Host batches this worker runs at once (threads).")
@pass_context
@run_safely
def worker(ctx: Context, concurrency: int) -> None:
    """Run captures and checks the scheduler hands out (queue.backend = celery)."""
    from archiver.tasks import close_worker_archives, make_celery, worker_archive

    if ctx.settings["queue.backend"] != "celery":
        ctx.say("note: queue.backend is not celery, so no scheduler sends work to workers")
    # Before any task: repair the files of a worker that died here, upload what it left.
    for note in worker_archive(ctx.settings).prepare_store():
        ctx.say(note)
    app = make_celery(ctx.settings)
    try:  # SIGTERM is Celery's warm shutdown: the batches in hand are finished first
        app.worker_main(["worker", "--pool=threads", f"--concurrency={concurrency}",
                         "--loglevel=WARNING" if ctx.quiet else "--loglevel=INFO",
                         "--without-gossip", "--without-mingle", "--without-heartbeat",
                         "--queues=archiver"])
    finally:
        close_worker_archives()  # WARC file closed cleanly, pools let go


def main() -> None:
    """Console entry point."""
    # Leave the ~100,000 objects the imports made (SQLAlchemy's above all) out of every garbage
    # collection: a full collection walked them all, a pause of tens of milliseconds that
    # stalled every thread of a check run, and again at exit (~120 ms of a one-shot command).
    gc.freeze()
    cli(prog_name="archiver")
