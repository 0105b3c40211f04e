"""Text fingerprints: how alike two versions of a page are, from a small stored sketch.

A page's visible text is cut into overlapping three-word shingles; each is hashed once and the
``SKETCH_SIZE`` smallest hashes are kept (a bottom-k MinHash sketch).  Comparing two sketches
estimates the Jaccard similarity of the shingle sets: 1.0 for the same text, near 0.0 for
unrelated texts.  Drift is ``1 - similarity``.
"""

from __future__ import annotations

import hashlib
import heapq
import multiprocessing
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from operator import methodcaller

from selectolax.lexbor import LexborHTMLParser

from archiver.net.content import ContentError, charset_of, decode_text, undo_content_encoding

SKETCH_SIZE = 64
SHINGLE_WORDS = 3
_WORD_RE = re.compile(r"\w+", re.UNICODE)
_HIDDEN = ("script", "style", "noscript", "template", "svg")
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})


def visible_text(html: str) -> str:
    """The words a reader sees in an HTML document (scripts and styles left out)."""
    try:
        tree = LexborHTMLParser(html)
    except (TypeError, ValueError, UnicodeError):
        return html
    for node in tree.css(",".join(_HIDDEN)):
        node.decompose()
    root = tree.body or tree.root
    return root.text(separator=" ") if root is not None else ""


_blake2b_8 = partial(hashlib.blake2b, digest_size=8)
_digest = methodcaller("digest")


def sketch(text: str) -> str:
    """Bottom-k sketch of a text, as a compact string to store."""
    words = _WORD_RE.findall(text.lower())
    if len(words) < SHINGLE_WORDS:
        shingles = {" ".join(words)} if words else set()
    else:  # distinct shingles first: repeated boilerplate is hashed once
        shingles = set(map(" ".join, zip(words, words[1:], words[2:], strict=False)))
    # Each shingle's value is its 8-byte BLAKE2b digest read big-endian, so the smallest values
    # are the smallest digests: compare the bytes and convert only the ones kept.  ``map`` over
    # C functions keeps the per-shingle work out of the interpreter loop.
    digests = set(map(_digest, map(_blake2b_8, map(str.encode, shingles))))
    smallest = heapq.nsmallest(SKETCH_SIZE, digests)
    return ",".join(f"{int.from_bytes(value, 'big'):x}" for value in smallest)


def similarity(first: str, second: str) -> float:
    """Estimated Jaccard similarity (0..1) of the texts behind two sketches."""
    a = {int(v, 16) for v in first.split(",") if v}
    b = {int(v, 16) for v in second.split(",") if v}
    if not a and not b:
        return 1.0
    if not a or not b:
        return 0.0
    union_smallest = heapq.nsmallest(SKETCH_SIZE, a | b)
    shared = sum(1 for value in union_smallest if value in a and value in b)
    return shared / len(union_smallest)


def body_sketch(body: bytes, content_type: str, content_encoding: str,
                limit: int) -> str | None:
    """Sketch of a response body as received, or None when it cannot be read as text."""
    try:
        data = undo_content_encoding(body, content_encoding, limit)
    except ContentError:
        return None
    media = content_type.split(";", 1)[0].strip().lower()
    if media in HTML_TYPES or (not media and data.lstrip()[:1] == b"<"):
        return sketch(visible_text(decode_text(data, charset_of(content_type))))
    if media.startswith("text/") or media in {"application/json", "application/xml"}:
        return sketch(decode_text(data, charset_of(content_type)))
    # Binary bodies: the same bytes or not; one hash stands for the whole body.
    return f"{int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), 'big'):x}"


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
