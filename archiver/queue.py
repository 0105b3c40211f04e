"""Distributed work (``queue.backend = celery``): the scheduler claims, workers run.

The scheduler claims due links *per host*: for each host it first takes the host's batch
marker in Redis (``SET NX`` with the lease as expiry; one marker per host for captures and
checks alike), then leases up to ``queue.host_batch_size`` of the host's due links under one
owner token, then sends one task with the IDs and the token.  A host never has two batches
out at once, so the per-host limits of the one worker that holds the batch are the limits
for all workers together.

A worker keeps its batch alive (marker and leases renewed) while it works and deletes the
marker when done.  A worker that dies stops renewing: the marker and the leases expire, the
links come due again and the next tick hands them out under a new token; a late copy of the
old task finds the token changed and skips the links, so each due run is captured once.

One message may also be *delivered* twice (the broker hands out again a message that was not
acked in time, or restores one when a connection drops), and both copies carry the same token.
So a worker first takes the batch's delivery key (``SET NX``, renewed like the marker): a
second copy that finds it taken — running, or marked done when the first copy ended — skips
the batch.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, or_, select, update

from archiver.archive import Archive
from archiver.clock import utcnow
from archiver.jobs import LEASE_COLUMNS, WorkKind, release_claims
from archiver.models import Link, link_is_ignored
from archiver.settings import Settings

log = logging.getLogger(__name__)
TASK_NAME = "archiver.run_host_batch"
_BATCH_SETTING = {WorkKind.CHECK: "health.batch_size", WorkKind.CAPTURE: "capture.batch_size"}
# Delete (or extend) the marker only while it still holds our token.
_DELETE_IF_OWNER = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
                    "return redis.call('del', KEYS[1]) else return 0 end")
_EXTEND_IF_OWNER = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
                    "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end")


class Sender(Protocol):
    """What dispatching needs of a Celery app (tests may pass a fake)."""

    def send_task(self, name: str, args: Any = None, **options: Any) -> Any:
        """Queue the task ``name`` with ``args``."""


def redis_client(settings: Settings) -> Any:
    """A Redis client on ``queue.broker_url`` (markers live next to the broker's queues)."""
    import redis

    return redis.Redis.from_url(settings["queue.broker_url"])


def marker_key(host: str) -> str:
    """Redis key of the outstanding batch for ``host`` (one for checks and captures alike:
    both go to the same site, so both count towards its limits)."""
    return f"archiver:batch:{host}"


def delivery_key(owner: str) -> str:
    """Redis key held by the one delivery of batch ``owner`` that runs it."""
    return f"archiver:delivery:{owner}"


def take_delivery(client: Any, owner: str, ms: int) -> bool:
    """Hold batch ``owner``'s delivery key for ``ms``; False if another delivery of the same
    message holds it (running) or ran it already (done)."""
    return bool(client.set(delivery_key(owner), "running", nx=True, px=ms))


def extend_delivery(client: Any, owner: str, ms: int) -> bool:
    """Push the delivery key's expiry ``ms`` ahead while the batch runs."""
    return bool(client.pexpire(delivery_key(owner), ms))


def finish_delivery(client: Any, owner: str, ms: int) -> None:
    """Mark batch ``owner`` done for ``ms``: a copy of its message delivered later skips it."""
    client.set(delivery_key(owner), "done", px=ms)


def lease_ms(settings: Settings) -> int:
    """The lease (``capture.lease``) in milliseconds."""
    return max(1, int(settings["capture.lease"] * 1000))


def release_marker(client: Any, host: str, owner: str) -> bool:
    """Delete the host's batch marker if it is still ``owner``'s."""
    return bool(client.eval(_DELETE_IF_OWNER, 1, marker_key(host), owner))


def extend_marker(client: Any, host: str, owner: str, ms: int) -> bool:
    """Push the marker's expiry ``ms`` ahead if it is still ``owner``'s."""
    return bool(client.eval(_EXTEND_IF_OWNER, 1, marker_key(host), owner, ms))


@dataclass
class DispatchSummary:
    """What one dispatch did."""

    kind: str
    batches: int = 0
    links: int = 0
    busy_hosts: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One-line human summary."""
        return (f"{self.kind}: {self.links} links sent in {self.batches} host batches "
                f"({len(self.busy_hosts)} hosts still busy)")


def due_by_host(archive: Archive, kind: WorkKind, limit: int,
                now: datetime | None = None) -> dict[str, list[int]]:
    """Up to ``limit`` due, unleased link IDs, grouped by host (oldest due first)."""
    due_col, lease_col, _owner = LEASE_COLUMNS[kind]
    now = now or utcnow()
    with archive.db.session() as session:
        rows = session.execute(
            select(Link.id, Link.host)
            .where(due_col.is_not(None), due_col <= now,
                   or_(lease_col.is_(None), lease_col < now), ~link_is_ignored())
            .order_by(due_col, Link.id).limit(limit)).all()
    grouped: dict[str, list[int]] = defaultdict(list)
    for link_id, host in rows:
        grouped[host].append(link_id)
    return dict(grouped)


def claim_links(archive: Archive, kind: WorkKind, link_ids: list[int], owner: str,
                now: datetime | None = None) -> list[int]:
    """Lease those of ``link_ids`` that are still free to ``owner``; return the ones taken."""
    if not link_ids:
        return []
    _due, lease_col, owner_col = LEASE_COLUMNS[kind]
    now = now or utcnow()
    until = now + timedelta(seconds=archive.settings["capture.lease"])
    with archive.db.session() as session:
        session.execute(update(Link)
                        .where(Link.id.in_(link_ids), or_(lease_col.is_(None), lease_col < now))
                        .values({lease_col: until, owner_col: owner})
                        .execution_options(synchronize_session=False))
        return sorted(session.scalars(select(Link.id).where(Link.id.in_(link_ids),
                                                            owner_col == owner)))


def still_owned(archive: Archive, kind: WorkKind, link_id: int, owner: str) -> bool:
    """Whether ``owner`` still holds an unexpired lease on ``link_id``."""
    _due, lease_col, owner_col = LEASE_COLUMNS[kind]
    with archive.db.session() as session:
        found = session.scalar(select(Link.id).where(
            and_(Link.id == link_id, owner_col == owner, lease_col > utcnow())))
    return found is not None


def take_marker(client: Any, host: str, owner: str, ms: int) -> bool:
    """At a batch's start: hold the host's marker (still ours, or free again); False if
    another batch holds it (ours expired while the task waited in the queue)."""
    if client.set(marker_key(host), owner, nx=True, px=ms):
        return True
    return extend_marker(client, host, owner, ms)


def dispatch_due(archive: Archive, kind: WorkKind, sender: Sender,
                 redis: Any | None = None) -> DispatchSummary:
    """Claim due links host by host and send one task per host batch (see the module doc)."""
    settings = archive.settings
    client = redis if redis is not None else redis_client(settings)
    per_host: int = settings["queue.host_batch_size"]
    summary = DispatchSummary(kind=str(kind))
    if archive.stopping.is_set():
        return summary
    for host, ids in due_by_host(archive, kind, settings[_BATCH_SETTING[kind]]).items():
        owner = uuid.uuid4().hex
        if not client.set(marker_key(host), owner, nx=True, px=lease_ms(settings)):
            summary.busy_hosts.append(host)  # its batch is still out (or died: it expires)
            continue
        taken = claim_links(archive, kind, ids[:per_host], owner)
        if not taken:
            release_marker(client, host, owner)
            continue
        try:
            sender.send_task(TASK_NAME, args=[str(kind), host, taken, owner])
        except Exception:
            release_claims(archive, kind, owner, taken)
            release_marker(client, host, owner)
            raise
        summary.batches += 1
        summary.links += len(taken)
    return summary
