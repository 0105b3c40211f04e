"""The archive of one process: settings, database and WARC store, opened once and passed on."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from archiver.check import ProbeCache
from archiver.db import Database
from archiver.net.client import HttpClient
from archiver.net.politeness import HostLimiter
from archiver.settings import Settings
from archiver.site_probes import store_probe, stored_probes
from archiver.warc.remote import RemoteStorage
from archiver.warc.store import WarcStore

if TYPE_CHECKING:  # imported when first used: checks need none of the capture code
    from archiver.capture import Capturer

log = logging.getLogger(__name__)
POLITENESS_FILE = "politeness.lock"  # per-host limits shared by this machine's processes


@dataclass
class Archive:
    """Everything a job needs; jobs receive it together with row IDs, never with rows."""

    settings: Settings
    db: Database
    store: WarcStore
    _client: HttpClient | None = field(default=None, repr=False)
    _shared: HostLimiter | None = field(default=None, repr=False)  # the client's limiter
    _probes: ProbeCache | None = field(default=None, repr=False)
    _capturer: Capturer | None = field(default=None, repr=False)
    # Set (by a SIGTERM handler) to ask runs to start nothing new and finish what is in hand.
    stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    repairs: list[str] = field(default_factory=list, repr=False)  # notes of the crash repair
    # The first checks of a run ask for the client and the probe cache from many threads at
    # once; each must be built once (the probe cache reads the database to start).
    _building: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def __post_init__(self) -> None:
        if self.store.prepare is None:
            self.store.prepare = self._repair_store

    def _repair_store(self) -> None:
        """Repair WARC files whose writer died (run once, before this store's first write)."""
        from archiver.warc.repair import repair_folder

        try:
            self.repairs = repair_folder(self.store, self.db)
        except Exception:  # a failed repair must not stop new captures into new files
            log.exception("repair of %s failed", self.store.directory)
        self.repairs += [f"uploaded {name}, left behind in the WARC folder"
                         for name in self.store.publish_pending()]

    def prepare_store(self) -> list[str]:
        """Run the crash repair now rather than at the first write; return its notes."""
        self.store.prepare_for_writing()
        return self.repairs

    @classmethod
    def open(cls, settings: Settings, *, require_schema: bool = True) -> Archive:
        """Open the database and the WARC store described by ``settings``."""
        db = Database(settings)
        if require_schema:
            db.require_current()
        store = WarcStore(settings.warc_dir, settings["warc.prefix"],
                          settings["warc.max_file_bytes"],
                          remote=RemoteStorage.from_settings(settings))
        return cls(settings=settings, db=db, store=store)

    def client(self) -> HttpClient:
        """The HTTP client shared by this process's runs (one politeness limiter for all)."""
        with self._building:
            if self._client is None:
                self._shared = self._shared_limiter()
                self._client = HttpClient(self.settings, self._shared)
            return self._client

    def _shared_limiter(self) -> HostLimiter:
        """Per-host limits every process of the archive keeps together: with
        ``queue.backend = celery`` in Redis, next to the broker (workers on several machines);
        otherwise in a file of the data folder, for the scheduler, the web process and any
        command run meanwhile on this machine."""
        if self.settings["queue.backend"] == "celery":
            from archiver.net.shared_limits import shared_limiter

            return shared_limiter(self.settings)
        from archiver.net.machine_limits import machine_limiter

        return machine_limiter(self.settings.data_dir / POLITENESS_FILE,
                               self.settings["fetch.per_host_concurrency"],
                               self.settings["fetch.per_host_delay"],
                               self.settings["fetch.concurrency"])

    def probes(self) -> ProbeCache:
        """Soft-404 probe answers shared by this process's checks."""
        with self._building:
            if self._probes is None:
                ttl = self.settings["health.probe_cache"]
                self._probes = ProbeCache(ttl, stored_probes(self.db, ttl),
                                          partial(store_probe, self.db, ttl))
            return self._probes

    def capturer(self) -> Capturer:
        """The page capturer of this process (one robots.txt cache, one digest memory)."""
        with self._building:
            if self._capturer is None:
                from archiver.capture import Capturer, index_lookup
                from archiver.robots import RobotsPolicy

                client = self.client()
                self._capturer = Capturer(client, self.store, self.settings,
                                          lookup=index_lookup(self.db.new_session),
                                          robots=RobotsPolicy(client))
        return self._capturer

    def close(self) -> None:
        """Close the WARC file, the HTTP pool and the database pool."""
        if self._capturer is not None:
            self._capturer.close()
        self.store.close()
        if self._client is not None:
            self._client.close()
            if self._shared is not None:
                self._shared.close()
        self.db.dispose()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Stopping:
    """A run's stop request: the event its work watches, and the signal that set it."""

    event: threading.Event
    signal_name: str | None = None  # "SIGTERM" or "SIGINT" once one came

    def is_set(self) -> bool:
        """True once a stop was asked for."""
        return self.event.is_set()


# What a second signal does: SIGTERM ends the process at once (status 143), Ctrl-C raises
# KeyboardInterrupt; both crash-safe too (records are written whole), just abrupt.
_SECOND_SIGNAL: dict[signal.Signals, Callable[[int, FrameType | None], Any] | int] = {
    signal.SIGTERM: signal.SIG_DFL, signal.SIGINT: signal.default_int_handler}


@contextmanager
def stop_gracefully(event: threading.Event) -> Iterator[Stopping]:
    """While inside, SIGTERM or Ctrl-C (SIGINT) sets ``event`` instead of ending the process,
    so the run finishes and keeps what it has in hand and starts nothing new (main thread
    only)."""
    stopping = Stopping(event)
    if threading.current_thread() is not threading.main_thread():
        yield stopping
        return

    def handle(number: int, _frame: FrameType | None) -> None:
        stopping.signal_name = signal.Signals(number).name
        event.set()
        for each in previous:
            signal.signal(each, _SECOND_SIGNAL[each])

    # A signal ignored when we started (a background job's Ctrl-C, nohup) stays ignored.
    previous: dict[signal.Signals, Any] = {}  # filled before a handler can run
    for each in _SECOND_SIGNAL:
        if signal.getsignal(each) is not signal.SIG_IGN:
            previous[each] = signal.getsignal(each)
            signal.signal(each, handle)
    try:
        yield stopping
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler if handler is not None else signal.SIG_DFL)


SECRET_KEY_FILE = "secret.key"  # noqa: S105 - a file name, not a secret


def write_secret_key(key_file: Path) -> None:
    """Write a new secret key unless ``key_file`` holds one already (an empty file, left by an
    init that died before writing it, is replaced).  The key is written to a temporary file
    created with mode 0600, synced, then renamed into place: never readable by others, never
    seen half-written."""
    try:
        if key_file.read_text(encoding="utf-8").strip():
            return
    except FileNotFoundError:
        pass
    descriptor, name = tempfile.mkstemp(dir=key_file.parent, prefix=f".{key_file.name}.")
    temp = Path(name)  # created with mode 0600
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_urlsafe(48))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, key_file)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def initialise(settings: Settings) -> Path:
    """Create the data folder, the WARC folder, a secret key and the database schema."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.warc_dir.mkdir(parents=True, exist_ok=True)
    write_secret_key(settings.data_dir / SECRET_KEY_FILE)
    database = Database(settings)
    try:
        database.migrate()
    finally:
        database.dispose()
    return settings.data_dir
