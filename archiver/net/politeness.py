"""Politeness: at most N requests in flight to a host (and M in all), starts spaced by a delay."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class HostLimiter:
    """Shared by every request of a process, so the limits hold across threads and runs."""

    def __init__(self, per_host_concurrency: int, per_host_delay: float,
                 total_concurrency: int | None = None) -> None:
        self.per_host_concurrency = per_host_concurrency
        self.per_host_delay = per_host_delay
        self._total = threading.Semaphore(total_concurrency) if total_concurrency else None
        self._lock = threading.Lock()
        self._slots: dict[str, threading.Semaphore] = {}
        self._next_start: dict[str, float] = {}

    def _semaphore(self, host: str) -> threading.Semaphore:
        with self._lock:
            slot = self._slots.get(host)
            if slot is None:
                slot = self._slots[host] = threading.Semaphore(self.per_host_concurrency)
            return slot

    @contextmanager
    def slot(self, host: str) -> Iterator[None]:
        """Hold one of ``host``'s slots, starting no sooner than the delay allows."""
        semaphore = self._semaphore(host)
        semaphore.acquire()
        if self._total is not None:
            self._total.acquire()
        try:
            with self._lock:
                now = time.monotonic()
                start = max(now, self._next_start.get(host, now))
                self._next_start[host] = start + self.per_host_delay
            if start > now:
                time.sleep(start - now)
            yield
        finally:
            if self._total is not None:
                self._total.release()
            semaphore.release()
