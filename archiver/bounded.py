"""A dict that forgets: the memory of a process that runs for months must not grow with it.

The scheduler and the workers keep one HTTP client, one robots.txt cache and one probe cache for
their whole life; each remembers something per site, and a large archive cites hundreds of
thousands of sites.  Their maps keep the most recently used entries only.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class RecentDict(OrderedDict[K, V]):
    """An ordered dict of at most ``limit`` keys: storing a key makes it the newest, and the
    oldest is dropped when there are too many.  Not thread-safe: callers hold their own lock."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        if limit < 1:
            raise ValueError("a RecentDict holds at least one key")
        self.limit = limit

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)
