"""Page sketches computed in a helper process while a capture fetches the page's requisites.

Hashing shingles (``archiver.fingerprint``) is a capture's costliest step and holds the GIL
all along; a helper process runs it on the other core.  Only captures use this module, so a
link check never imports it.

The helper is a plain ``python -c`` child fed through its standard input: a
``multiprocessing`` child would first run the parent's main script again (the console script
imports the whole CLI: about 0.8 s of CPU at every capture run), and the helper needs only
``archiver.fingerprint``.  It leaves when its standard input closes, which happens when the
process that started it ends in any way, even by SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from queue import SimpleQueue
from typing import IO, Any

from archiver.fingerprint import HTML_TYPES, body_sketch

Pending = Callable[[], str | None]  # the sketch, when it is wanted
SketchArgs = tuple[bytes, str, str, int]  # body_sketch's arguments
_FRAME = struct.Struct("<Q")  # every message: its length, then a pickle
_HELPER_MAIN = "from archiver.sketch_pool import serve; serve()"


def _send(stream: IO[bytes], message: object) -> None:
    data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
    stream.write(_FRAME.pack(len(data)) + data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    """The next message, or None at the end of the stream (its writer is gone)."""
    head = stream.read(_FRAME.size)
    if len(head) < _FRAME.size:
        return None
    size = _FRAME.unpack(head)[0]
    data = stream.read(size)
    return pickle.loads(data) if len(data) == size else None  # noqa: S301 - our own parent


def serve() -> None:
    """Run in the helper: sketch each ``(number, args)`` read from standard input and answer
    ``(number, sketch, ok)``; leave when standard input closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the parent's to handle
    requests = sys.stdin.buffer
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print cannot break the replies
    # A reading thread empties the pipe at once, so the parent never waits on a full pipe
    # while a page is being sketched here.
    queue: SimpleQueue[Any] = SimpleQueue()

    def read() -> None:
        try:
            while (message := _receive(requests)) is not None:
                queue.put(message)
        finally:
            queue.put(None)  # leave, whatever stopped the reading

    threading.Thread(target=read, name="requests", daemon=True).start()
    while (message := queue.get()) is not None:
        number, args = message
        try:
            _send(replies, (number, body_sketch(*args), True))
        except Exception:  # the parent sketches it again, and so sees the error
            _send(replies, (number, None, False))


class HelperGone(Exception):
    """The helper process ended, or could not sketch a body."""


class _Helper:
    """One helper process and the sketches it owes."""

    def __init__(self) -> None:
        # The helper searches the parent's module path, so it imports the same copy of the
        # package (as a multiprocessing child would).
        main = f"import sys; sys.path[:] = {sys.path!r}; {_HELPER_MAIN}"
        self.process = subprocess.Popen([sys.executable, "-c", main],  # noqa: S603
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._lock = threading.Lock()
        self._owed: dict[int, Future[str | None]] = {}
        self._number = 0
        self._gone = False
        self._reader = threading.Thread(target=self._read, name="sketch-replies", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        try:
            while (message := _receive(self.process.stdout)) is not None:
                number, value, ok = message
                with self._lock:
                    future = self._owed.pop(number)
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(HelperGone("the helper could not sketch it"))
        finally:  # whatever stopped the reading, nobody waits for a sketch that will not come
            self._end()
            self.process.stdout.close()  # here, not in close(): never under a blocked read

    def _end(self) -> None:
        with self._lock:
            self._gone, owed, self._owed = True, self._owed, {}
        for future in owed.values():
            future.set_exception(HelperGone("the sketch helper ended"))

    def submit(self, args: SketchArgs) -> Future[str | None]:
        """Send a body to be sketched; raises HelperGone when the helper has ended."""
        future: Future[str | None] = Future()
        with self._lock:
            if self._gone:
                raise HelperGone("the sketch helper ended")
            self._number += 1
            self._owed[self._number] = future
            assert self.process.stdin is not None
            try:  # under the lock: one message at a time on the pipe
                _send(self.process.stdin, (self._number, args))
            except (OSError, ValueError) as exc:  # the helper died; the pipe is broken
                del self._owed[self._number]
                raise HelperGone("the sketch helper ended") from exc
        return future

    def close(self) -> None:
        """Close its input (it leaves) and wait for it."""
        with self._lock:
            self._gone = True
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):  # it had died: nothing is left to be written
                self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=10)


class SketchPool:
    """Sketches text bodies in a helper process, so that hashing shingles (a capture's costliest
    step, all of it holding the GIL) runs on another core while the capture goes on.

    Bodies that are not text, and every body when the pool is off (``processes`` 0) or its
    helper could not start or died, are sketched in the calling thread.
    """

    def __init__(self, processes: int | None = None) -> None:
        self.processes = (1 if (os.cpu_count() or 1) > 1 else 0) if processes is None \
            else min(processes, 1)  # one helper: the capture itself holds the other core
        self._helper: _Helper | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _started(self) -> _Helper | None:
        with self._lock:
            if self._helper is None and self.processes > 0 and not self._closed:
                try:
                    self._helper = _Helper()
                except OSError:  # the system refused a new process
                    self.processes = 0
            return self._helper

    @property
    def helper_pid(self) -> int | None:
        """The helper's process ID, once it has started."""
        helper = self._helper
        return helper.process.pid if helper is not None else None

    def _give_up(self, helper: _Helper) -> None:
        with self._lock:
            if self._helper is helper:
                self._helper, self.processes = None, 0
        helper.close()

    def submit(self, body: bytes, content_type: str, content_encoding: str,
               limit: int) -> Pending:
        """Start sketching a response body (as ``body_sketch``); call the result for it."""
        args = (body, content_type, content_encoding, limit)
        media = content_type.split(";", 1)[0].strip().lower()
        helper = self._started() if media in HTML_TYPES or media.startswith("text/") else None
        if helper is None:
            value = body_sketch(*args)
            return lambda: value
        try:
            future = helper.submit(args)
        except HelperGone:
            self._give_up(helper)
            value = body_sketch(*args)
            return lambda: value

        def result() -> str | None:
            try:
                return future.result()
            except HelperGone:  # it died, or failed on this body: sketch (or fail) here
                if helper.process.poll() is not None:
                    self._give_up(helper)
                return body_sketch(*args)

        return result

    def close(self) -> None:
        """Stop the helper process."""
        with self._lock:
            helper, self._helper, self._closed = self._helper, None, True
        if helper is not None:
            helper.close()
