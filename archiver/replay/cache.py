"""A bounded cache of rendered replay answers.

Rendering (reading the record, decoding, rewriting every URL of the document) is most of what
a replay request costs, and its result depends only on the WARC record and the replay options:
records are written once and never change, so a rendered answer stays right for as long as
the record is indexed where it is. The key is the record's location (file, offset, length), the
capture time and URL the rewriter uses, and every option that changes the output. What can
change between requests (the ``Link`` header's previous and next mementos, the link's state in
the banner) is never part of a cached answer: the view adds it on every request.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from sqlalchemy.orm import Session

from archiver.models import Capture
from archiver.replay.render import ArchivedResponse, render_capture
from archiver.warc.store import WarcStore

# A few answers this large would push every ordinary page out: they are rendered every time.
MAX_ITEM_SHARE = 8
HEADER_OVERHEAD = 64  # bytes counted per header besides its text


def render_key(capture: Capture, *options: Hashable) -> tuple[Hashable, ...]:
    """The cache key of ``capture`` rendered with ``options`` (everything that changes it)."""
    return (capture.warc_file, capture.offset, capture.length, capture.record_type,
            capture.payload_digest, capture.url, capture.captured_at, *options)


def _size(answer: ArchivedResponse) -> int:
    return len(answer.body) + sum(len(name) + len(value) + HEADER_OVERHEAD
                                  for name, value in answer.headers)


class RenderCache:
    """A thread-safe LRU of :class:`ArchivedResponse`, bounded by the bytes it holds."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.held = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[Hashable, tuple[ArchivedResponse, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> ArchivedResponse | None:
        """The cached answer for ``key`` (now the most recently used), or None."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: Hashable, answer: ArchivedResponse) -> None:
        """Keep ``answer`` under ``key``, dropping the least recently used to make room."""
        size = _size(answer)
        if size * MAX_ITEM_SHARE > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.held -= old[1]
            self._items[key] = (answer, size)
            self.held += size
            while self.held > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self.held -= dropped

    def __len__(self) -> int:
        return len(self._items)


def render_cached(cache: RenderCache | None, session: Session, store: WarcStore,
                  capture: Capture, **options: Any) -> ArchivedResponse:
    """:func:`render_capture` with ``options``, answered from ``cache`` when it holds it."""
    if cache is None or cache.max_bytes <= 0:
        return render_capture(session, store, capture, **options)
    key = render_key(capture, *sorted(options.items()))
    answer = cache.get(key)
    if answer is None:
        answer = render_capture(session, store, capture, **options)
        cache.put(key, answer)
    return answer
