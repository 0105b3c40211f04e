"""Politeness: at most N requests in flight to a host (and M in all), starts spaced by a delay;
and a queue that hands work out by host so that workers never wait for a busy host."""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")
PRUNE_EVERY = 1024  # hosts noted between two sweeps of past start times
STOP_POLL_S = 0.1  # how often a wait for a host's slot looks at its stop


class TurnAbandoned(Exception):
    """A stop came while waiting for a host's turn: the request was not made."""


def sleep_or_abandon(seconds: float, stop: threading.Event | None = None) -> None:
    """Sleep ``seconds``; with a ``stop``, raise :class:`TurnAbandoned` as soon as it is set."""
    if stop is None:
        time.sleep(seconds)
    elif stop.wait(seconds):
        raise TurnAbandoned


def abandon_if_stopped(stop: threading.Event | None) -> None:
    """Raise :class:`TurnAbandoned` when ``stop`` is set: no request begins after a stop."""
    if stop is not None and stop.is_set():
        raise TurnAbandoned


def acquire(lock: threading.Semaphore, stop: threading.Event | None = None) -> None:
    """Acquire ``lock``; with a ``stop``, raise :class:`TurnAbandoned` once it is set."""
    if stop is None:
        lock.acquire()
        return
    while not lock.acquire(timeout=STOP_POLL_S):
        if stop.is_set():
            raise TurnAbandoned


class HostLimiter:
    """Shared by every request of a process, so the limits hold across threads and runs."""

    def __init__(self, per_host_concurrency: int, per_host_delay: float,
                 total_concurrency: int | None = None) -> None:
        self.per_host_concurrency = per_host_concurrency
        self.per_host_delay = per_host_delay
        # Spaced in memory: what this class was given, whatever a subclass that spaces starts
        # across processes (and sets per_host_delay for that) says afterwards.
        self._memory_delay = per_host_delay
        self._total = threading.Semaphore(total_concurrency) if total_concurrency else None
        self._lock = threading.Lock()
        # Only hosts with a request held or waiting have a semaphore (a scheduler meets
        # hundreds of thousands of hosts in its life), counted by ``_users``.
        self._slots: dict[str, threading.Semaphore] = {}
        self._users: Counter[str] = Counter()
        self._next_start: dict[str, float] = {}

    def _semaphore(self, host: str) -> threading.Semaphore:
        with self._lock:
            slot = self._slots.get(host)
            if slot is None:
                slot = self._slots[host] = threading.Semaphore(self.per_host_concurrency)
            self._users[host] += 1
            return slot

    def _leave(self, host: str) -> None:
        with self._lock:
            self._users[host] -= 1
            if self._users[host] <= 0:
                del self._users[host], self._slots[host]

    def _wait_turn(self, host: str, delay: float, starts: dict[str, float],
                   stop: threading.Event | None = None) -> None:
        """Sleep until ``host``'s next start in ``starts``, moving that one ``delay`` on."""
        with self._lock:
            now = time.monotonic()
            start = max(now, starts.get(host, now))
            self._set_next_start(starts, host, start + delay)
        if start > now:
            sleep_or_abandon(start - now, stop)

    @staticmethod
    def _set_next_start(starts: dict[str, float], host: str, at: float) -> None:
        """Note when ``host`` may start next (the caller holds the lock); past starts, which
        mean no wait as much as no entry does, are dropped now and then."""
        new = host not in starts
        starts[host] = at
        if new and len(starts) % PRUNE_EVERY == 0:
            now = time.monotonic()
            for gone in [name for name, when in starts.items() if when <= now]:
                del starts[gone]

    def close(self) -> None:
        """Let go of what the limiter holds outside this process (nothing, here)."""

    @contextmanager
    def slot(self, host: str, stop: threading.Event | None = None) -> Iterator[None]:
        """Hold one of ``host``'s slots, starting no sooner than the delay allows.  With a
        ``stop``, the wait for the turn ends in :class:`TurnAbandoned` once it is set."""
        semaphore = self._semaphore(host)
        try:
            acquire(semaphore, stop)
            try:
                if self._total is not None:
                    acquire(self._total, stop)
                try:
                    if self._memory_delay > 0:
                        self._wait_turn(host, self._memory_delay, self._next_start, stop)
                    abandon_if_stopped(stop)
                    yield
                finally:
                    if self._total is not None:
                        self._total.release()
            finally:
                semaphore.release()
        finally:
            self._leave(host)


class HostQueue(Generic[T]):
    """Work grouped by host, handed out so that no host has more than ``per_host`` in hand.

    Workers take an item of a host that has a free slot, never one whose slots are all busy
    while another host waits with work; a worker that has just finished a host's item takes
    that host's next one first (its connection may still be open).  Hosts take turns.
    """

    def __init__(self, items: Iterable[tuple[str, T]], per_host: int,
                 stop: threading.Event | None = None) -> None:
        self.per_host = max(1, per_host)
        self._stop = stop or threading.Event()  # once set, nothing more is handed out
        self._wake = threading.Condition()
        self._pending: dict[str, deque[T]] = {}
        for host, item in items:
            self._pending.setdefault(host, deque()).append(item)
        self._busy: Counter[str] = Counter()
        # Hosts with work and a free slot, in the order they take turns.
        self._ready: OrderedDict[str, None] = OrderedDict.fromkeys(self._pending)
        self._left = sum(len(queue) for queue in self._pending.values())

    def take(self, prefer: str | None = None) -> tuple[str, T] | None:
        """The next (host, item), waiting while every host with work is busy; None at the end
        or after a stop."""
        with self._wake:
            while self._left and not self._stop.is_set():
                if prefer is not None and prefer in self._ready:
                    host = prefer
                    del self._ready[host]
                elif self._ready:
                    host = self._ready.popitem(last=False)[0]
                else:
                    self._wake.wait()
                    continue
                queue = self._pending[host]
                item = queue.popleft()
                self._left -= 1
                self._busy[host] += 1
                if queue and self._busy[host] < self.per_host:
                    self._ready[host] = None  # to the back of the line
                if not self._left:
                    self._wake.notify_all()  # nothing left: the waiting workers can go
                return host, item
            return None

    def done(self, host: str) -> None:
        """An item of ``host`` is finished: its slot is free for the host's next item."""
        with self._wake:
            self._busy[host] -= 1
            if self._stop.is_set():
                self._wake.notify_all()  # the waiting workers can go
            elif self._pending.get(host) and host not in self._ready:
                self._ready[host] = None
                self._wake.notify()

    def drop(self) -> int:
        """Forget the items not handed out yet (a stop was asked for); return how many."""
        with self._wake:
            dropped = self._left
            self._pending.clear()
            self._ready.clear()
            self._left = 0
            self._wake.notify_all()
            return dropped
