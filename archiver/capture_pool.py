"""Captures spread over several processes, so that a large run uses more than one CPU core.

A capture's own work (parsing answers, framing and compressing records, index rows) holds one
core per process whatever its threads do.  When a run's batch is large enough and
``capture.processes`` allows it, the links are split by host (a site's pages stay together, so
its style sheets and images are fetched once, by one process), this process captures one share
and a spawned child each of the others.  Per-host limits hold across all of them (a file of
locks in the data folder, or Redis: ``archiver/net/machine_limits.py``).  Each child opens the
archive itself, writes its own WARC file and index rows and gives its links' leases back, as
any capture does, then sends its outcomes back.  A stop (SIGTERM, Ctrl-C) reaches the children
too, through a pipe rather than a signal (a child that a terminal's Ctrl-C reached already
would take a second signal as "stop at once"; a ``multiprocessing.Event`` hangs its setter when
a process waiting on it has died): each finishes the links in hand and starts nothing new, as
it does when the run that started it is gone.  A child that dies counts its share as
``lost``, and the run gives back the leases of what it left undone, so the next run takes them
at once.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import multiprocessing
import os
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from archiver.archive import Archive, stop_gracefully
from archiver.jobs import DueLink, capture_all
from archiver.logs import RUN_ID, configure_logging
from archiver.settings import Settings
from archiver.urls import host_of

log = logging.getLogger(__name__)

MIN_SHARE = 40  # links a process is worth starting for (a child takes about 0.7 s of CPU)
MAX_AUTO = 4  # processes at most when capture.processes is 0 (one per core)
POLL_S = 0.2
LOST = "lost"  # the outcome of each link of a child that died without saying how it went


def process_count(settings: Settings, links: int) -> int:
    """How many processes ``links`` captures are spread over (one in a daemonic process,
    which may not start children: a worker of some process pool)."""
    if multiprocessing.current_process().daemon:
        return 1
    wanted: int = settings["capture.processes"] or min(os.cpu_count() or 1, MAX_AUTO)
    return max(1, min(wanted, links // MIN_SHARE))


def split_by_host(due: list[DueLink], parts: int) -> list[list[DueLink]]:
    """``due`` in ``parts`` shares of whole hosts, as even as the hosts allow (largest host
    first, each to the smallest share so far); none is empty unless there are fewer hosts."""
    by_host: dict[str, list[DueLink]] = defaultdict(list)
    for link in due:
        by_host[host_of(link.url)].append(link)
    shares: list[list[DueLink]] = [[] for _ in range(parts)]
    sizes = [(0, index) for index in range(parts)]
    for links in sorted(by_host.values(), key=len, reverse=True):
        size, index = heapq.heappop(sizes)
        shares[index].extend(links)
        heapq.heappush(sizes, (size + len(links), index))
    return [share for share in shares if share]


@dataclass
class _Child:
    """A child process of the run: its share, where its outcomes come from, how it is told
    to stop."""

    process: Any
    outcomes: Connection
    stop: Connection
    share: list[DueLink]

    def tell_to_stop(self) -> None:
        """Ask it to finish the links in hand and start no more (once is enough)."""
        with contextlib.suppress(OSError):  # it has ended already
            self.stop.send(True)


def capture_in_processes(archive: Archive, due: list[DueLink], processes: int,
                         count: Callable[[str | None], None]) -> None:
    """Capture ``due`` over ``processes`` processes (this one included), counting outcomes."""
    shares = split_by_host(due, processes)
    context = multiprocessing.get_context("spawn")  # no fork of a process with threads
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    children: list[_Child] = []
    mine = list(shares[0])
    for share in shares[1:]:
        outcomes_in, outcomes_out = context.Pipe(duplex=False)
        stop_in, stop_out = context.Pipe(duplex=False)
        process = context.Process(
            target=capture_share, name="archiver-capture", daemon=False,
            args=(archive.settings, share, RUN_ID.get(), level, stop_in, outcomes_out))
        try:
            process.start()
        except OSError as exc:  # out of processes or memory: this process captures it
            log.warning("a capture process could not start (%s): its links are captured "
                        "here", exc)
            outcomes_in.close()
            stop_out.close()
            mine.extend(share)
            continue
        finally:  # the child's ends: this process keeps only its own
            outcomes_out.close()
            stop_in.close()
        children.append(_Child(process, outcomes_in, stop_out, share))
    log.info("capture: %d links over %d processes", len(due), len(children) + 1)
    finished = threading.Event()

    def pass_stop_on() -> None:  # at once, not when this process's own share is done
        while not finished.wait(POLL_S):
            if archive.stopping.is_set():
                for child in children:
                    child.tell_to_stop()
                return

    threading.Thread(target=pass_stop_on, name="stop-children", daemon=True).start()
    try:
        capture_all(archive, mine, count)
    finally:
        try:
            _collect(children, count)
        finally:
            finished.set()
            for child in children:
                child.stop.close()


def _collect(children: list[_Child], count: Callable[[str | None], None]) -> None:
    """Wait for each child's outcomes and count them."""
    for child in children:
        outcomes: dict[str, int] | None = None
        while outcomes is None and (child.process.is_alive() or child.outcomes.poll()):
            if child.outcomes.poll(POLL_S):
                try:
                    outcomes = child.outcomes.recv()
                except (EOFError, OSError):
                    break
        child.process.join()
        child.outcomes.close()
        if outcomes is None:
            log.error("a capture process ended (exit %s) without its outcomes; its %d links "
                      "are counted as lost and given back", child.process.exitcode,
                      len(child.share))
            outcomes = {LOST: len(child.share)}
        for outcome, times in outcomes.items():
            for _each in range(times):
                count(outcome)


def capture_share(settings: Settings, share: list[DueLink], run_id: str | None, level: str,
                  stop: Connection, sender: Connection) -> None:
    """A child's whole life: capture ``share`` and send its outcomes (by name) back.  A word
    on ``stop``, the run's end of it closing (the run is gone), SIGTERM or Ctrl-C here: it
    finishes the links in hand and starts no more."""
    configure_logging(level, settings["log_format"])
    RUN_ID.set(run_id)
    outcomes: Counter[str] = Counter()

    def count(outcome: str | None) -> None:
        outcomes[outcome or "gone"] += 1

    with Archive.open(settings) as archive, stop_gracefully(archive.stopping):
        def pass_stop_on() -> None:
            with contextlib.suppress(EOFError, OSError):
                stop.recv()
            archive.stopping.set()

        threading.Thread(target=pass_stop_on, name="stop", daemon=True).start()
        capture_all(archive, share, count)
    try:
        sender.send(dict(outcomes))
    except OSError:  # the run that started it is gone: its records and rows are kept anyway
        pass
    finally:
        sender.close()
        stop.close()
