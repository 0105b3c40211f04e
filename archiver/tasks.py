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
from archiver.jobs import WorkKind, capture_link, check_link
from archiver.queue import (
    TASK_NAME,
    extend_marker,
    lease_ms,
    redis_client,
    release_marker,
    renew_links,
    still_owned,
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
                if pending:
                    renew_links(archive, work, pending, owner)
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
    if not take_marker(client, host, owner, lease_ms(archive.settings)):
        client.close()  # another batch has the host now; our leases have lapsed or will
        log.warning("%s batch for %s came too late: skipped", work, host)
        return {"skipped": len(link_ids)}
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
            client.close()
    log.info("%s batch for %s: %s", work, host, counts)
    return counts


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
