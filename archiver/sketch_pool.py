"""Page sketches computed in a helper process while a capture fetches the page's requisites.

Hashing shingles (``archiver.fingerprint``) is a capture's costliest step and holds the GIL
all along; a helper process runs it on the other core.  Only captures use this module, so a
link check never imports the process-pool machinery.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from archiver.fingerprint import HTML_TYPES, body_sketch

Pending = Callable[[], str | None]  # the sketch, when it is wanted
PARENT_CHECK_SECONDS = 1.0


def _exit_with_parent(parent: int) -> None:
    """Run in the helper: leave as soon as the process that started it is gone, even killed
    (a pool's helper would otherwise wait forever on a queue its own copy keeps open)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class SketchPool:
    """Sketches text bodies in a helper process, so that hashing shingles (a capture's costliest
    step, all of it holding the GIL) runs on another core while the capture goes on.

    The helper is a new interpreter (``spawn``): forking the threaded caller is not safe.
    Bodies that are not text, and every body when the pool is off (``processes`` 0) or its
    helper died, are sketched in the calling thread.
    """

    def __init__(self, processes: int | None = None) -> None:
        self.processes = (1 if (os.cpu_count() or 1) > 1 else 0) if processes is None \
            else processes
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _pool(self) -> ProcessPoolExecutor | None:
        with self._lock:
            if self._executor is None and self.processes > 0 and not self._closed:
                context = multiprocessing.get_context("spawn")
                self._executor = ProcessPoolExecutor(self.processes, mp_context=context,
                                                     initializer=_exit_with_parent,
                                                     initargs=(os.getpid(),))
            return self._executor

    def _give_up(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is broken:
                self._executor, self.processes = None, 0
        broken.shutdown(wait=False, cancel_futures=True)

    def submit(self, body: bytes, content_type: str, content_encoding: str,
               limit: int) -> Pending:
        """Start sketching a response body (as ``body_sketch``); call the result for it."""
        args = (body, content_type, content_encoding, limit)
        media = content_type.split(";", 1)[0].strip().lower()
        pool = self._pool() if media in HTML_TYPES or media.startswith("text/") else None
        if pool is None:
            value = body_sketch(*args)
            return lambda: value
        try:
            future = pool.submit(body_sketch, *args)
        except (BrokenProcessPool, RuntimeError, AssertionError, OSError):
            # The helper died or cannot start: the pool is shut down, the caller is a daemonic
            # process (which may not have children), or the system refused a new process.
            self._give_up(pool)
            value = body_sketch(*args)
            return lambda: value

        def result() -> str | None:
            try:
                return future.result()
            except BrokenProcessPool:
                self._give_up(pool)
                return body_sketch(*args)

        return result

    def close(self) -> None:
        """Stop the helper process."""
        with self._lock:
            executor, self._executor, self._closed = self._executor, None, True
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
