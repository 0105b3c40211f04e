"""Per-host politeness held across processes: the workers of a distributed archive keep every
host's limits in Redis, so ``fetch.per_host_concurrency`` and ``fetch.per_host_delay`` bound
all of them together, for every host a run contacts (page requisites on a shared CDN, redirect
targets, soft-404 probes), not only the link's own host that the scheduler's batch marker
guards.

Per host, two keys (one hash tag, so both sit in one Redis Cluster slot):

* ``…:holders``, a sorted set of holder tokens scored by the Redis-clock instant their hold
  runs out.  Taking a slot prunes the run-out holders first, so the slot of a worker killed
  mid-request comes back once its hold runs out (``fetch.timeout`` plus a margin: no request
  lasts longer, the client's watchdog cuts it).
* ``…:next``, the Redis-clock instant the next request may start; each taker is given
  ``max(now, next)`` and moves it one delay on, in the same script, so starts are spaced
  across processes.  The taker sleeps until its start holding its slot, as the process-local
  :class:`HostLimiter` does.

Times are the Redis server's (``TIME``), so the workers' clocks need not agree.  A full host
is asked again after a short sleep that grows (never a busy loop).  The process's own threads
first pass a process-local :class:`HostLimiter` (the host's slots and ``fetch.concurrency``),
so they queue cheaply in memory rather than in Redis.

When Redis cannot be reached (a restart, a network cut), requests do not fail: the process
falls back to its local limits (each host's slots and delay, for this process alone), logs a
warning, and asks Redis again a second later; a warning says when it answers again.  Its
batch in hand ends well, and the link's own host is still guarded across workers by the
scheduler's batch marker; other hosts may briefly see more than the limits, one process's
worth at most per process.  A Redis restart without persistence forgets the holders anyway.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from redis.exceptions import RedisError

from archiver.net.politeness import HostLimiter, abandon_if_stopped, sleep_or_abandon
from archiver.settings import Settings

log = logging.getLogger(__name__)
KEY_PREFIX = "archiver:politeness"
HOLD_MARGIN_S = 5.0  # beyond fetch.timeout, before a holder that never gave back is pruned
FIRST_PAUSE_S = 0.005
LONGEST_PAUSE_S = 0.1
REDIS_RETRY_S = 1.0  # after Redis failed, limits stay process-local this long before asking
REDIS_TIMEOUT_S = 2.0  # connecting to or waiting on Redis: an unreachable server must not
                       # hold a request up for the system's TCP timeout

# KEYS: holders, next start.  ARGV: token, slots per host, hold ms, delay ms.
# Returns {1, ms to wait before starting} when the slot is taken, {0, ms until the first
# holder's hold runs out} when the host is full.
_TAKE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local slots, hold, delay = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= slots then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tonumber(first[2]) - now}
end
local start = math.max(now, tonumber(redis.call('GET', KEYS[2]) or now))
redis.call('ZADD', KEYS[1], start + hold, ARGV[1])
if redis.call('PTTL', KEYS[1]) < start + hold - now then
  redis.call('PEXPIRE', KEYS[1], start + hold - now)
end
if delay > 0 then
  redis.call('SET', KEYS[2], start + delay, 'PX', start + delay - now)
end
return {1, start - now}
"""


def holders_key(host: str) -> str:
    """Redis key of the sorted set of ``host``'s slot holders."""
    return f"{KEY_PREFIX}:{{{host}}}:holders"


def next_start_key(host: str) -> str:
    """Redis key of the instant (Redis clock, ms) ``host``'s next request may start."""
    return f"{KEY_PREFIX}:{{{host}}}:next"


class SharedHostLimiter(HostLimiter):
    """A :class:`HostLimiter` whose per-host limits hold across every process on one Redis."""

    def __init__(self, redis: Any, per_host_concurrency: int, per_host_delay: float,
                 total_concurrency: int | None = None, hold: float = 30.0) -> None:
        # Locally only the slots: the delay is spaced in Redis, for this process's threads too.
        super().__init__(per_host_concurrency, 0.0, total_concurrency)
        self.per_host_delay = per_host_delay
        self.redis = redis
        self.hold_ms = max(1, int(hold * 1000))
        self._take_script = redis.register_script(_TAKE)
        self._redis_retry_at = 0.0  # while Redis fails: when to ask it again (0: it works)
        self._local_next: dict[str, float] = {}  # starts spaced locally while Redis fails

    @contextmanager
    def slot(self, host: str, stop: threading.Event | None = None) -> Iterator[None]:
        """Hold one of ``host``'s slots among all processes, starting no sooner than the
        delay allows after the last start by any of them (``stop``: as
        :meth:`HostLimiter.slot`)."""
        with super().slot(host, stop):
            token = self._take(host, stop)
            try:
                abandon_if_stopped(stop)
                yield
            finally:
                self._give_back(host, token)

    def _take(self, host: str, stop: threading.Event | None = None) -> str | None:
        """Take a slot in Redis and wait for its start; None when Redis failed and the
        process-local limits were applied instead."""
        token = uuid.uuid4().hex
        args = [token, self.per_host_concurrency, self.hold_ms,
                round(self.per_host_delay * 1000)]
        pause = FIRST_PAUSE_S
        while True:
            if time.monotonic() < self._redis_retry_at:
                self._wait_locally(host, stop)
                return None
            try:
                taken, wait_ms = self._take_script(keys=[holders_key(host),
                                                         next_start_key(host)], args=args)
            except RedisError as exc:
                self._redis_failed(exc)
                continue
            self._redis_works()
            if taken:
                start = time.monotonic() + wait_ms / 1000
                with self._lock:  # should Redis fail next, local spacing goes on from here
                    self._set_next_start(self._local_next, host, start + self.per_host_delay)
                if wait_ms > 0:
                    try:
                        sleep_or_abandon(wait_ms / 1000, stop)
                    except BaseException:
                        self._give_back(host, token)
                        raise
                return token
            # Jittered, so processes waiting on one host do not all ask at the same instant.
            sleep_or_abandon(min(pause, max(wait_ms, 1) / 1000) * random.uniform(0.5, 1.0),
                             stop)
            pause = min(pause * 2, LONGEST_PAUSE_S)

    def _wait_locally(self, host: str, stop: threading.Event | None = None) -> None:
        """Space this process's starts at ``host`` by the delay (Redis is unreachable)."""
        self._wait_turn(host, self.per_host_delay, self._local_next, stop)

    def _redis_failed(self, exc: RedisError) -> None:
        with self._lock:
            if self._redis_retry_at == 0.0:
                log.warning("Redis is unreachable (%s): per-host limits hold for this process "
                            "only until it answers again", exc)
            self._redis_retry_at = time.monotonic() + REDIS_RETRY_S

    def _redis_works(self) -> None:
        if self._redis_retry_at:
            with self._lock:
                if self._redis_retry_at:
                    log.warning("Redis answers again: per-host limits hold across processes")
                    self._redis_retry_at = 0.0

    def _give_back(self, host: str, token: str | None) -> None:
        if token is None:
            return
        try:
            self.redis.zrem(holders_key(host), token)
        except RedisError:  # the hold runs out on its own: the slot comes back then
            log.warning("could not give back the politeness slot of %s", host, exc_info=True)

    def close(self) -> None:
        """Close the Redis connections."""
        self.redis.close()


def shared_limiter(settings: Settings) -> SharedHostLimiter:
    """The limiter of a worker process: ``fetch.*`` limits kept on ``queue.broker_url``."""
    import redis

    client = redis.Redis.from_url(settings["queue.broker_url"],
                                  socket_timeout=REDIS_TIMEOUT_S,
                                  socket_connect_timeout=REDIS_TIMEOUT_S)
    return SharedHostLimiter(client, settings["fetch.per_host_concurrency"],
                             settings["fetch.per_host_delay"], settings["fetch.concurrency"],
                             hold=settings["fetch.timeout"] + HOLD_MARGIN_S)
