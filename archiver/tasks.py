"""The Celery side of distributed work: ``make_celery(settings)`` and the one task.

Nothing happens at import: the app is built from settings by ``make_celery`` (the worker
command and the scheduler each call it).  The task receives IDs and an owner token only.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from archiver.archive import Archive
from archiver.jobs import WorkKind, capture_link, check_link, renew_leases
from archiver.queue import (
    TASK_NAME,
    extend_delivery,
    extend_marker,
    finish_delivery,
    lease_ms,
    redis_client,
    release_marker,
    still_owned,
    take_delivery,
    take_marker,
)
from archiver.settings import Settings

log = logging.getLogger(__name__)
_ARCHIVES: dict[int, Archive] = {}  # one open archive per settings object in this process
_ARCHIVES_LOCK = threading.Lock()


def worker_archive(settings: Settings) -> Archive:
    """The archive of this worker process (opened at the first task, then reused)."""
    with _ARCHIVES_LOCK:
        archive = _ARCHIVES.get(id(settings))
        if archive is None:
            archive = _ARCHIVES[id(settings)] = Archive.open(settings)
        return archive


def close_worker_archives() -> None:
    """Close the archives this process opened (the worker is shutting down)."""
    with _ARCHIVES_LOCK:
        while _ARCHIVES:
            _ARCHIVES.popitem()[1].close()


def run_host_batch(archive: Archive, kind: str, host: str, link_ids: list[int],
                   owner: str) -> dict[str, int]:
    """Run one host's batch politely, keep its claim alive meanwhile, then free the host.

    Links whose lease ``owner`` no longer holds (the claim expired and another batch took
    them) are skipped, so a late or repeated task never captures a due run twice.
    """
    work = WorkKind(kind)
    client = redis_client(archive.settings)
    lease = archive.settings["capture.lease"]
    done = threading.Event()
    remaining = set(link_ids)
    remaining_lock = threading.Lock()

    def keep_alive() -> None:
        while not done.wait(max(lease / 3, 0.05)):
            with remaining_lock:
                pending = sorted(remaining)
            try:
                extend_marker(client, host, owner, lease_ms(archive.settings))
                extend_delivery(client, owner, lease_ms(archive.settings))
                if pending:
                    renew_leases(archive, work, owner, pending)
            except Exception:
                log.exception("could not renew the claim of %s batch for %s", work, host)

    def one(link_id: int) -> str:
        try:
            if archive.stopping.is_set():
                return "stopped"
            if not still_owned(archive, work, link_id, owner):
                return "skipped"
            job = capture_link if work is WorkKind.CAPTURE else check_link
            return str(job(archive, link_id) or "gone")
        except Exception:
            log.exception("%s failed for link %s", work, link_id, extra={"link_id": link_id})
            return "error"
        finally:
            with remaining_lock:
                remaining.discard(link_id)

    counts: dict[str, int] = {}
    started = False
    try:
        if not take_delivery(client, owner, lease_ms(archive.settings)):
            # another copy of this very message runs the batch, or ran it
            log.warning("%s batch for %s delivered twice: this copy skipped", work, host)
            return {"duplicate": len(link_ids)}
        if not take_marker(client, host, owner, lease_ms(archive.settings)):
            end_delivery(client, owner, archive.settings)  # another batch has the host now;
            log.warning("%s batch for %s came too late: skipped", work, host)  # leases lapsed
            return {"skipped": len(link_ids)}
        started = True
    finally:
        if not started:  # skipped, or Redis failed before the batch began
            client.close()
    renewer = threading.Thread(target=keep_alive, name=f"lease-{host}", daemon=True)
    renewer.start()
    try:
        with ThreadPoolExecutor(max_workers=archive.settings["fetch.per_host_concurrency"],
                                thread_name_prefix=f"{work}-{host}") as pool:
            for outcome in pool.map(lambda i: contextvars.copy_context().run(one, i),
                                    link_ids):
                counts[outcome] = counts.get(outcome, 0) + 1
    finally:
        done.set()
        renewer.join()
        try:
            archive.store.checkpoint()  # with object storage: the batch's records are uploaded
        finally:
            try:
                release_marker(client, host, owner)
            except Exception as exc:  # Redis away: the marker expires with the lease anyway
                log.warning("could not free host %s: %r", host, exc)
            end_delivery(client, owner, archive.settings)
    log.info("%s batch for %s: %s", work, host, counts)
    return counts


def end_delivery(client: Any, owner: str, settings: Settings) -> None:
    """Mark batch ``owner`` done (for as long as a copy of its message may still be delivered)
    and close ``client``; a failure (Redis away) is only logged: the batch's work is done, and
    a late copy still skips the links whose leases ``owner`` no longer holds."""
    try:
        finish_delivery(client, owner, int(redelivery_after(settings) * 1000))
    except Exception as exc:
        log.warning("could not mark batch %s done: %r", owner, exc)
    finally:
        client.close()


def longest_batch(settings: Settings) -> float:
    """Seconds one host batch may run at most: every link one after the other (as with
    ``fetch.per_host_concurrency = 1``), each taking its longest capture or check."""
    fetch = settings["fetch.timeout"] + settings["fetch.per_host_delay"]
    check = (settings["health.retries"] + 1) * (
        fetch + settings["health.retry_backoff"] + settings["health.max_retry_after"])
    capture = settings["capture.max_page_time"] + settings["fetch.per_host_delay"]
    return float(settings["queue.host_batch_size"] * max(check, capture))


def redelivery_after(settings: Settings) -> float:
    """The broker's visibility timeout in seconds: well above the longest a message can wait
    for its lease to lapse plus the longest batch, and never below Celery's 1 h default."""
    return max(3600.0, 2 * (float(settings["capture.lease"]) + longest_batch(settings)))


def make_celery(settings: Settings) -> Any:
    """The Celery app for ``settings``: Redis broker, a message acked as its batch starts,
    fetched only when a thread is free to run it."""
    from celery import Celery

    app = Celery("archiver", broker=settings["queue.broker_url"], set_as_current=False)
    app.conf.update(
        # Acked as the batch starts: a worker that dies loses nothing (its claim expires and
        # the links are handed out again), and a busy worker holds no unacked message when
        # the broker connection drops (late acks made Celery 5.7 stop the worker for good,
        # restoring and then acking them through a connection it had already dismantled).
        task_acks_late=False,
        # Take a message only for a free thread, so no batch waits in a worker's buffer
        # while its claim lapses.
        worker_prefetch_multiplier=1,
        worker_disable_prefetch=True,
        # Cancels only unacked late-ack tasks on a lost connection (none here); set to quiet
        # Celery's warning that this becomes the default.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # A message taken but not acked is handed out again only after this (not Celery's
        # fixed hour); a second copy would skip anyway (see archiver.queue).
        broker_transport_options={"visibility_timeout": redelivery_after(settings)},
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        task_default_queue="archiver",
    )

    @app.task(name=TASK_NAME)  # type: ignore[untyped-decorator]
    def run_host_batch_task(kind: str, host: str, link_ids: list[int],
                            owner: str) -> dict[str, int]:
        return run_host_batch(worker_archive(settings), kind, host, link_ids, owner)

    return app
