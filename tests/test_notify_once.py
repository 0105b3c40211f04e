"""Two notifiers at once (the scheduler and an `archiver check` typed at a shell) send each dead
link's notice once, on SQLite and on PostgreSQL, against real loopback receivers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from archiver.archive import Archive, initialise
from archiver.clock import utcnow
from archiver.models import Link
from archiver.notify import NotifySummary, send_dead_link_notifications
from tests.conftest import make_settings
from tests.pg import PostgresServer, fresh_pg_url, pg_server  # noqa: F401
from tests.test_notify import (
    Hook,
    MailStore,
    add_link,
    hook,  # noqa: F401
    notified_at,
    serving_smtp,
    smtp_settings,
)

URLS = [f"https://gone{n}.example/x" for n in range(3)]
WAIT_S = 20  # a bound on every wait, so that a broken fix fails rather than hangs

Opener = Callable[..., Archive]


class Gate:
    """Holds the first notice a receiver gets until released, so that a second notifier runs
    its whole round while the first is still sending."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.released = threading.Event()
        self._lock = threading.Lock()
        self._first = True

    def hold_first(self) -> None:
        """Called by a receiver for each notice: blocks for the first one only."""
        with self._lock:
            first, self._first = self._first, False
        if first:
            self.arrived.set()
            self.released.wait(WAIT_S)


class GatedMailStore(MailStore):
    """An SMTP handler that keeps its first message waiting at the gate (without blocking the
    server's event loop, so that other connections are still served)."""

    def __init__(self, gate: Gate) -> None:
        super().__init__()
        self.gate = gate

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        await asyncio.get_running_loop().run_in_executor(None, self.gate.hold_first)
        return answer


@pytest.fixture
def gate() -> Iterator[Gate]:
    opened = Gate()
    yield opened
    opened.released.set()  # never leave a receiver thread waiting


@pytest.fixture
def gated_smtp(gate: Gate) -> Iterator[tuple[MailStore, int]]:
    with serving_smtp(GatedMailStore(gate)) as served:
        yield served


@pytest.fixture(params=["sqlite", "postgresql"])
def open_archive(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Open an archive over one shared database (SQLite, or a fresh PostgreSQL database) with
    ``section__key`` overrides; each call is another Archive with its own engine, as another
    process would have."""
    base: dict[str, object] = {}
    if request.param == "postgresql":
        base["database_url"] = request.getfixturevalue("fresh_pg_url")
    data = tmp_path / "data"
    initialise(make_settings(data, **base))
    opened: list[Archive] = []

    def factory(**overrides: object) -> Archive:
        archive = Archive.open(make_settings(data, **base, **overrides))
        opened.append(archive)
        return archive

    yield factory
    for archive in opened:
        archive.close()


def notify_in_thread(archive: Archive, results: list[NotifySummary]) -> threading.Thread:
    """Start a notification round in its own thread; its summary goes to ``results``."""
    thread = threading.Thread(
        target=lambda: results.append(send_dead_link_notifications(archive)), daemon=True)
    thread.start()
    return thread


def second_round_while_first_sends(first: Archive, second: Archive,
                                   gate: Gate) -> tuple[NotifySummary, NotifySummary]:
    """Run ``first`` until its notice is held at the gate, run ``second`` to its end, then let
    the first notice through; return both summaries."""
    firsts: list[NotifySummary] = []
    seconds: list[NotifySummary] = []
    running = notify_in_thread(first, firsts)
    assert gate.arrived.wait(WAIT_S), "the first round sent nothing"
    notify_in_thread(second, seconds).join(WAIT_S)
    gate.released.set()
    running.join(WAIT_S)
    assert len(firsts) == len(seconds) == 1, "a round did not finish"
    return firsts[0], seconds[0]


def posted(hook: Hook) -> list[str]:  # noqa: F811
    """Every link URL in every webhook POST, repeats kept."""
    return [link["url"] for call in hook.calls for link in call["json"]["links"]]


def mailed(store: MailStore) -> list[str]:
    """Every link URL in every e-mail digest, repeats kept."""
    return [line.split(". ", 1)[1] for message in store.messages
            for line in message.body.splitlines() if line[:1].isdigit() and ". http" in line]


def test_webhook_notice_sent_once_by_two_notifiers(open_archive: Opener, hook: Hook,  # noqa: F811
                                                   gate: Gate) -> None:
    hook.during = gate.hold_first
    scheduler = open_archive(notify__webhook_url=hook.url)
    shell = open_archive(notify__webhook_url=hook.url)
    ids = [add_link(scheduler, url) for url in URLS]

    first, second = second_round_while_first_sends(scheduler, shell, gate)

    assert len(hook.calls) == 1
    assert sorted(posted(hook)) == URLS
    assert first == NotifySummary(links=3, webhook="sent", marked=3)
    assert second == NotifySummary(links=0)
    assert all(notified_at(scheduler, link_id) is not None for link_id in ids)


def test_email_digest_sent_once_by_two_notifiers(open_archive: Opener, gate: Gate,
                                                 gated_smtp: tuple[MailStore, int]) -> None:
    store, port = gated_smtp
    scheduler = open_archive(**smtp_settings(port))
    shell = open_archive(**smtp_settings(port))
    for url in URLS:
        add_link(scheduler, url)

    first, second = second_round_while_first_sends(scheduler, shell, gate)

    assert len(store.messages) == 1
    assert sorted(mailed(store)) == URLS
    assert (first.links, first.email, first.marked) == (3, "sent", 3)
    assert second == NotifySummary(links=0)


def test_failed_notice_is_sent_again_once_by_a_later_round(
        open_archive: Opener, hook: Hook, gate: Gate) -> None:  # noqa: F811
    hook.during = gate.hold_first
    hook.status = 500
    scheduler = open_archive(notify__webhook_url=hook.url)
    shell = open_archive(notify__webhook_url=hook.url)
    ids = [add_link(scheduler, url) for url in URLS]

    first, second = second_round_while_first_sends(scheduler, shell, gate)

    assert (first.webhook, first.marked) == ("failed: HTTP 500", 0)
    assert second == NotifySummary(links=0)
    assert len(hook.calls) == 1
    assert all(notified_at(scheduler, link_id) is None for link_id in ids)
    hook.status = 200
    later = send_dead_link_notifications(shell)
    assert later == NotifySummary(links=3, webhook="sent", marked=3)
    assert [sorted(link["url"] for link in call["json"]["links"])
            for call in hook.calls] == [URLS, URLS]
    assert send_dead_link_notifications(scheduler) == NotifySummary(links=0)


def test_notifiers_starting_together_send_each_link_once(open_archive: Opener,
                                                         hook: Hook) -> None:  # noqa: F811
    start = threading.Barrier(4)
    hook.during = lambda: time.sleep(0.5)  # a slow webhook: the rounds overlap
    archives = [open_archive(notify__webhook_url=hook.url) for _ in range(4)]
    ids = [add_link(archives[0], f"https://gone{n}.example/x") for n in range(12)]
    results: list[NotifySummary] = []

    def notify(archive: Archive) -> None:
        start.wait(WAIT_S)
        results.append(send_dead_link_notifications(archive, limit=5))

    threads = [threading.Thread(target=notify, args=(archive,), daemon=True)
               for archive in archives]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)

    assert len(results) == 4, "a round did not finish"
    assert sorted(posted(hook)) == sorted(f"https://gone{n}.example/x" for n in range(12))
    assert sum(result.marked for result in results) == 12
    assert all(notified_at(archives[0], link_id) is not None for link_id in ids)


def test_links_held_by_a_live_round_are_left_and_by_a_dead_one_are_sent(
        open_archive: Opener, hook: Hook) -> None:  # noqa: F811
    archive = open_archive(notify__webhook_url=hook.url)
    held = add_link(archive, "https://held.example/x")
    abandoned = add_link(archive, "https://abandoned.example/x")
    now = utcnow()
    with archive.db.session() as session:  # what rounds in other processes left behind
        session.execute(update(Link).where(Link.id == held).values(
            dead_notice_lease_until=now + timedelta(minutes=5), dead_notice_lease_owner="other"))
        session.execute(update(Link).where(Link.id == abandoned).values(
            dead_notice_lease_until=now - timedelta(minutes=1), dead_notice_lease_owner="dead"))

    summary = send_dead_link_notifications(archive)

    assert summary == NotifySummary(links=1, webhook="sent", marked=1)
    assert posted(hook) == ["https://abandoned.example/x"]
    assert notified_at(archive, held) is None
    assert notified_at(archive, abandoned) is not None
