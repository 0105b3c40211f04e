"""Per-host politeness held across the processes of one archive on one machine.

Without it each process had its own limits: ``archiver serve``'s scheduler, an ``archiver
check`` or ``capture`` started by hand meanwhile, and the web process's "recheck now" could
together send a host two or three times the requests ``fetch.per_host_concurrency`` allows,
and start them closer than ``fetch.per_host_delay``.  Here the limits live in one file in the
data folder, through POSIX byte-range locks (``fcntl.lockf``):

* a host's slots are bytes of the file, one per allowed request in flight, in one of
  ``BUCKETS`` groups chosen by a hash of the host (two hosts that share a group share its
  limits: stricter, never looser).  A request holds one slot's lock; the kernel drops the locks
  of a process that ends in any way (SIGKILL included), so no slot is ever left taken;
* the instant the group's next request may start is 8 bytes of the file, read and moved one
  delay on under that range's lock, as :class:`HostLimiter` does in memory.  Times are
  ``time.monotonic()``, one clock for every process of the machine; a value left by an earlier
  boot (far ahead of now) is ignored.

POSIX locks belong to the process, not the thread: the process's own threads first pass the
in-memory :class:`HostLimiter` (slots, ``fetch.concurrency``), and each slot byte is tried by
one thread at a time.  Where the file cannot be locked (no ``fcntl``, a file system without
locks), the process keeps its own limits and says so once.  Distributed workers on several
machines use Redis instead (``archiver/net/shared_limits.py``).
"""

from __future__ import annotations

import logging
import os
import random
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from archiver.net.politeness import HostLimiter, abandon_if_stopped, sleep_or_abandon

try:
    import fcntl
except ImportError:  # not POSIX: each process keeps its own limits
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

BUCKETS = 4096
_START = struct.Struct("<d")  # a group's next start, at offset bucket * 8
_SLOTS_AT = BUCKETS * _START.size  # slot bytes follow: bucket * SLOT_STRIDE + slot
SLOT_STRIDE = 1024  # above fetch.per_host_concurrency's maximum; locks may lie past the end
_PROBE_AT = _SLOTS_AT + BUCKETS * SLOT_STRIDE  # a byte locked once to see that locks work
FIRST_PAUSE_S = 0.002
LONGEST_PAUSE_S = 0.05
STALE_AFTER = 600.0  # a next start this far ahead (plus the queue's delays) is another boot's


def bucket_of(host: str) -> int:
    """The group whose limits ``host`` uses (the same in every process and version)."""
    return zlib.crc32(host.encode("utf-8", "surrogatepass")) % BUCKETS


class MachineHostLimiter(HostLimiter):
    """A :class:`HostLimiter` whose per-host limits hold across processes sharing ``path``."""

    def __init__(self, path: Path, per_host_concurrency: int, per_host_delay: float,
                 total_concurrency: int | None = None) -> None:
        # In memory only the slots: the delay is spaced in the file, for these threads too.
        super().__init__(per_host_concurrency, 0.0, total_concurrency)
        self.per_host_delay = per_host_delay
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        self._held: dict[int, set[int]] = {}  # bucket -> slot bytes this process holds
        # Its own lock, never held across a system call: a call lets go of the GIL, and the
        # threads queueing meanwhile for the semaphores' lock cost a check round 5-10 %.
        self._bytes = threading.Lock()
        # A process's threads all own its locks: one at a time moves a group's next start.
        self._starts = threading.Lock()

    def close(self) -> None:
        """Close the file (every lock this process holds on it goes with it)."""
        os.close(self._fd)

    @contextmanager
    def slot(self, host: str, stop: threading.Event | None = None) -> Iterator[None]:
        """Hold one of ``host``'s slots among every process of the machine, starting no
        sooner than the delay allows after the last start by any of them (``stop``: as
        :meth:`HostLimiter.slot`)."""
        with super().slot(host, stop):
            bucket = bucket_of(host)
            taken = self._take(bucket, stop)
            try:
                if self.per_host_delay > 0:
                    self._wait_turn_shared(bucket, stop)
                abandon_if_stopped(stop)
                yield
            finally:
                self._give_back(bucket, taken)

    def _take(self, bucket: int, stop: threading.Event | None = None) -> int:
        """Lock a free slot byte of ``bucket``, waiting (growing pauses) while all are taken.
        A byte is reserved in ``_held`` before it is tried, so no other thread of this
        process (which would be granted the same lock) tries it meanwhile."""
        pause = FIRST_PAUSE_S
        while True:
            for slot in range(self.per_host_concurrency):
                with self._bytes:
                    held = self._held.setdefault(bucket, set())
                    if slot in held:
                        continue
                    held.add(slot)
                if self._lock_byte(bucket, slot):
                    return slot
                self._forget(bucket, slot)
            sleep_or_abandon(pause * random.uniform(0.5, 1.0), stop)
            pause = min(pause * 2, LONGEST_PAUSE_S)

    def _forget(self, bucket: int, slot: int) -> None:
        with self._bytes:
            held = self._held[bucket]
            held.discard(slot)
            if not held:
                del self._held[bucket]

    def _lock_byte(self, bucket: int, slot: int) -> bool:
        offset = _SLOTS_AT + bucket * SLOT_STRIDE + slot
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
        except BlockingIOError:
            return False
        except PermissionError:  # some systems say EACCES for a lock held elsewhere
            return False
        return True

    def _give_back(self, bucket: int, slot: int) -> None:
        """Unlock the byte, then free it for this process's threads (in that order: a thread
        locking it before the unlock would be granted the lock, then lose it)."""
        fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, _SLOTS_AT + bucket * SLOT_STRIDE + slot)
        self._forget(bucket, slot)

    def _wait_turn_shared(self, bucket: int, stop: threading.Event | None = None) -> None:
        """Sleep until the group's next start, moving that one delay on for everyone."""
        offset = bucket * _START.size
        with self._starts:
            fcntl.lockf(self._fd, fcntl.LOCK_EX, _START.size, offset)
            try:
                data = os.pread(self._fd, _START.size, offset)
                now = time.monotonic()
                stored = _START.unpack(data)[0] if len(data) == _START.size else 0.0
                if stored - now > STALE_AFTER + self.per_host_delay * 64:
                    stored = 0.0  # written before this boot's clock began
                start = max(now, stored)
                os.pwrite(self._fd, _START.pack(start + self.per_host_delay), offset)
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, _START.size, offset)
        if start > now:
            sleep_or_abandon(start - now, stop)


def machine_limiter(path: Path, per_host_concurrency: int, per_host_delay: float,
                    total_concurrency: int | None = None) -> HostLimiter:
    """Limits shared through ``path`` by this machine's processes; this process's own when
    the file cannot be locked (with a warning)."""
    problem = None
    if fcntl is None:
        problem = "this system has no POSIX file locks"
    else:
        try:
            limiter = MachineHostLimiter(path, per_host_concurrency, per_host_delay,
                                         total_concurrency)
        except OSError as exc:
            problem = f"{path} cannot be opened ({exc.strerror or exc})"
        else:
            try:  # a file system without locks says so here
                fcntl.lockf(limiter._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _PROBE_AT)
                fcntl.lockf(limiter._fd, fcntl.LOCK_UN, 1, _PROBE_AT)
                return limiter
            except (BlockingIOError, PermissionError):
                return limiter  # another process holds it this instant: locks work
            except OSError as exc:
                limiter.close()
                problem = f"{path} cannot be locked ({exc.strerror or exc})"
    log.warning("per-host limits hold for this process only: %s", problem)
    return HostLimiter(per_host_concurrency, per_host_delay, total_concurrency)


