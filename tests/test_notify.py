"""Dead-link notifications against real loopback receivers: a webhook site and an SMTP server."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import select, update
from werkzeug.wrappers import Request, Response

from archiver.archive import Archive, initialise
from archiver.clock import utcnow
from archiver.demo.fixtureweb import Site
from archiver.models import Capture, Citation, IgnoredDomain, Link, LinkState, Post, Source
from archiver.notify import NotifySummary, send_dead_link_notifications
from archiver.urls import host_of, url_key
from tests.conftest import discover_posts, make_settings, post

# -- receivers -------------------------------------------------------------------------------


@dataclass
class Received:
    """One message as the SMTP server got it."""

    mail_from: str
    rcpt_tos: list[str]
    message: Message

    @property
    def body(self) -> str:
        payload = self.message.get_payload(decode=True)
        assert isinstance(payload, bytes)
        return payload.decode(self.message.get_content_charset() or "utf-8")


@dataclass
class MailStore:
    """aiosmtpd handler keeping every message it is handed."""

    messages: list[Received] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                      message_from_bytes(envelope.content)))
        return "250 Message accepted for delivery"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                     auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append((login, password))
        return AuthResult(success=(login, password) == ("blogger", "s3cret"), handled=False)


class LoopbackController(Controller):
    """An aiosmtpd controller bound to port 0 that learns the port the system gave it."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@contextmanager
def serving_smtp(store: MailStore) -> Iterator[tuple[MailStore, int]]:
    """A real SMTP server on loopback delivering into ``store``, and its port."""
    controller = LoopbackController(store, hostname="127.0.0.1", port=0)
    controller.start()
    try:
        yield store, controller.port
    finally:
        controller.stop()


@pytest.fixture
def smtp() -> Iterator[tuple[MailStore, int]]:
    with serving_smtp(MailStore()) as served:
        yield served


@pytest.fixture
def smtp_auth() -> Iterator[tuple[MailStore, int]]:
    store = MailStore()
    controller = LoopbackController(store, hostname="127.0.0.1", port=0,
                                    authenticator=store.authenticate, auth_require_tls=False)
    controller.start()
    try:
        yield store, controller.port
    finally:
        controller.stop()


@dataclass
class Hook:
    """A webhook endpoint on a loopback site that records what is POSTed to it."""

    site: Site
    status: int = 200
    calls: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    during: Callable[[], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, request: Request) -> Response:
        with self.lock:
            self.headers.append(dict(request.headers))
            self.calls.append({"method": request.method,
                               "json": json.loads(request.get_data())})
        if self.during is not None:
            self.during()
        return Response("{}", status=self.status, content_type="application/json")

    @property
    def url(self) -> str:
        return self.site.url("/hooks/dead?token=abc")


@pytest.fixture
def hook(site: Site) -> Hook:
    endpoint = Hook(site)
    site.route("/hooks/dead", endpoint.handle)
    return endpoint


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def open_archive(tmp_path: Path) -> Iterator[Callable[..., Archive]]:
    """Open the one test archive with notify settings given as ``section__key`` overrides."""
    opened: list[Archive] = []
    data = tmp_path / "data"
    initialise(make_settings(data))

    def factory(**overrides: object) -> Archive:
        archive = Archive.open(make_settings(data, **overrides))
        opened.append(archive)
        return archive

    yield factory
    for archive in opened:
        archive.close()


# -- data ------------------------------------------------------------------------------------

SINCE = datetime(2024, 3, 1, 9, 30)


def add_link(archive: Archive, url: str, *, state: str = "dead", verdict: str = "not_found",
             status: int | None = 404, posts: tuple[str, ...] = ("https://blog.example/p/1",),
             override: str | None = None, notified: datetime | None = None,
             captured: datetime | None = None) -> int:
    """A link in the database as the checker would leave it, cited by ``posts``."""
    with archive.db.session() as session:
        source = session.scalars(select(Source)).first()
        if source is None:
            source = Source(kind="feed", location="https://blog.example/feed")
            session.add(source)
            session.flush()
        link = Link(url=url, url_key=url_key(url), host=host_of(url), state=state,
                    last_verdict=verdict, http_status=status, final_url=url,
                    consecutive_failures=3, first_failure_at=SINCE,
                    override_response=override, dead_notified_at=notified)
        session.add(link)
        session.flush()
        for post_url in posts:
            post = session.scalars(select(Post).where(Post.url == post_url)).first()
            if post is None:
                post = Post(source_id=source.id, url=post_url, title="A post",
                            content_hash="0" * 64)
                session.add(post)
                session.flush()
            session.add(Citation(post_id=post.id, link_id=link.id, href=url, element="a"))
        if captured is not None:
            session.add(Capture(url=url, url_key=url_key(url), captured_at=captured,
                                record_type="response", status=200, mime="text/html",
                                warc_file="archive-1.warc.gz", offset=0, length=100,
                                record_id="<urn:uuid:1>"))
        return link.id


def uncited_dead_link(archive: Archive, folder: Path) -> str:
    """A dead link the author removed from their only post (a folder post, discovered with
    the link, then without it) before it died; its URL."""
    dead = "https://gone.example.org/page"
    discover_posts(archive, folder, post("Lost", "https://blog.example/1", f"[x]({dead})"))
    discover_posts(archive, folder, post("Lost", "https://blog.example/1", "It is gone."))
    with archive.db.session() as session:
        session.execute(update(Link).where(Link.url == dead).values(
            state=LinkState.DEAD, last_verdict="not_found", http_status=404,
            consecutive_failures=3))
    return dead


def notified_at(archive: Archive, link_id: int) -> datetime | None:
    with archive.db.session() as session:
        link = session.get(Link, link_id)
        assert link is not None
        return link.dead_notified_at


def smtp_settings(port: int, **more: object) -> dict[str, object]:
    return {"notify__smtp_host": "127.0.0.1", "notify__smtp_port": port,
            "notify__email_to": "author@example.org", **more}


# -- webhook ---------------------------------------------------------------------------------


def test_webhook_receives_the_dead_links(open_archive: Callable[..., Archive],
                                         hook: Hook) -> None:
    archive = open_archive(notify__webhook_url=hook.url)
    first = add_link(archive, "https://gone.example/a",
                     posts=("https://blog.example/p/2", "https://blog.example/p/1"),
                     captured=datetime(2024, 1, 2, 3, 4, 5))
    second = add_link(archive, "https://down.example/b", verdict="dns_error", status=None)
    before = utcnow()

    summary = send_dead_link_notifications(archive)

    assert summary == NotifySummary(links=2, webhook="sent", email=None, marked=2)
    assert len(hook.calls) == 1
    assert hook.calls[0]["method"] == "POST"
    document = hook.calls[0]["json"]
    assert document["event"] == "links.dead"
    assert document["count"] == 2
    assert document["links"] == [
        {"url": "https://gone.example/a", "verdict": "not_found", "http_status": 404,
         "final_url": "https://gone.example/a", "first_failure_at": "2024-03-01T09:30:00Z",
         "archived_url": "/web/20240102030405/https://gone.example/a",
         "posts": ["https://blog.example/p/1", "https://blog.example/p/2"]},
        {"url": "https://down.example/b", "verdict": "dns_error", "http_status": None,
         "final_url": "https://down.example/b", "first_failure_at": "2024-03-01T09:30:00Z",
         "archived_url": None, "posts": ["https://blog.example/p/1"]},
    ]
    headers = hook.headers[0]
    assert headers["Content-Type"].startswith("application/json")
    assert headers["User-Agent"] == archive.settings["fetch.user_agent"]
    for link_id in (first, second):
        moment = notified_at(archive, link_id)
        assert moment is not None and moment >= before


def test_links_are_reported_once(open_archive: Callable[..., Archive], hook: Hook,
                                 smtp: tuple[MailStore, int]) -> None:
    store, port = smtp
    archive = open_archive(notify__webhook_url=hook.url, **smtp_settings(port))
    add_link(archive, "https://gone.example/a")

    assert send_dead_link_notifications(archive).marked == 1
    again = send_dead_link_notifications(archive)

    assert again == NotifySummary(links=0)
    assert again.line() == "notify: no newly dead links"
    assert len(hook.calls) == 1
    assert len(store.messages) == 1


def test_overridden_notified_and_living_links_are_skipped(open_archive: Callable[..., Archive],
                                                          hook: Hook) -> None:
    archive = open_archive(notify__webhook_url=hook.url)
    add_link(archive, "https://fine.example/overridden", override="a" * 64)
    told = utcnow() - timedelta(days=2)
    already = add_link(archive, "https://gone.example/told", notified=told)
    add_link(archive, "https://alive.example/", state="alive", verdict="ok", status=200)
    add_link(archive, "https://flaky.example/", state="failing", verdict="timeout")
    add_link(archive, "https://ignored.example/x")
    add_link(archive, "https://sub.ignored.example/y")
    reported = add_link(archive, "https://notignored.example/z")
    with archive.db.session() as session:
        session.add(IgnoredDomain(domain="ignored.example"))

    summary = send_dead_link_notifications(archive)

    assert summary.links == 1
    assert [link["url"] for link in hook.calls[0]["json"]["links"]] == [
        "https://notignored.example/z"]
    assert notified_at(archive, already) == told
    assert notified_at(archive, reported) is not None


def test_a_dead_link_no_post_cites_is_not_reported(open_archive: Callable[..., Archive],
                                                   hook: Hook, tmp_path: Path) -> None:
    """The author took the link out of their post, then it died: ``archiver report`` leaves
    it out and its CI gate passes, and no notice tells them a cited link is dead either."""
    archive = open_archive(notify__webhook_url=hook.url)
    uncited = uncited_dead_link(archive, tmp_path / "posts")
    add_link(archive, "https://gone.example/cited")

    summary = send_dead_link_notifications(archive)

    assert summary.links == 1
    assert [link["url"] for link in hook.calls[0]["json"]["links"]] == [
        "https://gone.example/cited"]
    with archive.db.session() as session:
        link = session.scalars(select(Link).where(Link.url == uncited)).one()
        assert link.dead_notified_at is None


def test_at_most_limit_links_per_round_in_id_order(open_archive: Callable[..., Archive],
                                                   hook: Hook) -> None:
    archive = open_archive(notify__webhook_url=hook.url)
    ids = [add_link(archive, f"https://gone.example/{n}") for n in range(5)]

    first = send_dead_link_notifications(archive, limit=3)
    second = send_dead_link_notifications(archive, limit=3)

    assert (first.links, first.marked, second.links, second.marked) == (3, 3, 2, 2)
    sent = [[link["url"] for link in call["json"]["links"]] for call in hook.calls]
    assert sent == [[f"https://gone.example/{n}" for n in range(3)],
                    [f"https://gone.example/{n}" for n in range(3, 5)]]
    assert all(notified_at(archive, link_id) is not None for link_id in ids)


def test_link_dead_again_after_coming_back_is_reported_again(
        open_archive: Callable[..., Archive], hook: Hook) -> None:
    archive = open_archive(notify__webhook_url=hook.url)
    link_id = add_link(archive, "https://phoenix.example/")
    send_dead_link_notifications(archive)
    with archive.db.session() as session:  # what apply_verdict does on a success
        link = session.get(Link, link_id)
        assert link is not None
        link.state, link.dead_notified_at = "alive", None
    assert send_dead_link_notifications(archive).links == 0
    with archive.db.session() as session:
        link = session.get(Link, link_id)
        assert link is not None
        link.state = "dead"

    summary = send_dead_link_notifications(archive)

    assert summary.links == 1 and summary.webhook == "sent"
    assert len(hook.calls) == 2
    assert notified_at(archive, link_id) is not None


def test_link_that_comes_back_while_being_reported_is_not_marked(
        open_archive: Callable[..., Archive], hook: Hook) -> None:
    archive = open_archive(notify__webhook_url=hook.url)
    link_id = add_link(archive, "https://phoenix.example/")

    def revive() -> None:  # a check run succeeds while the webhook is being called
        with archive.db.session() as session:
            link = session.get(Link, link_id)
            assert link is not None
            link.state, link.dead_notified_at = "alive", None

    hook.during = revive
    summary = send_dead_link_notifications(archive)

    assert summary.webhook == "sent" and summary.marked == 0
    assert notified_at(archive, link_id) is None


@pytest.mark.parametrize("status", [500, 404, 302])
def test_webhook_error_answer_fails_and_leaves_links_for_next_round(
        open_archive: Callable[..., Archive], hook: Hook, status: int,
        caplog: pytest.LogCaptureFixture) -> None:
    archive = open_archive(notify__webhook_url=hook.url)
    link_id = add_link(archive, "https://gone.example/a")
    hook.status = status

    summary = send_dead_link_notifications(archive)

    assert summary == NotifySummary(links=1, webhook=f"failed: HTTP {status}", marked=0)
    assert notified_at(archive, link_id) is None
    assert f"HTTP {status}" in caplog.text
    hook.status = 200
    assert send_dead_link_notifications(archive).marked == 1
    assert len(hook.calls) == 2


def test_webhook_to_closed_port_fails_quietly(open_archive: Callable[..., Archive],
                                              caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hooks/dead?token=very-secret"
    archive = open_archive(notify__webhook_url=url)
    link_id = add_link(archive, "https://gone.example/a")

    summary = send_dead_link_notifications(archive)

    assert summary.webhook == "failed: connection_refused"
    assert summary.email is None and summary.marked == 0
    assert notified_at(archive, link_id) is None
    assert "webhook failed" in caplog.text
    assert "very-secret" not in caplog.text
    assert "very-secret" not in summary.line()


# -- e-mail ----------------------------------------------------------------------------------


def test_email_digest_is_received(open_archive: Callable[..., Archive],
                                  smtp: tuple[MailStore, int]) -> None:
    store, port = smtp
    archive = open_archive(**smtp_settings(
        port, notify__email_to=" author@example.org, ,editor@example.org ,",
        notify__email_from="archiver@blog.example"))
    add_link(archive, "https://gone.example/a",
             posts=("https://blog.example/p/1", "https://blog.example/p/2"),
             captured=datetime(2024, 1, 2, 3, 4, 5))
    add_link(archive, "https://down.example/b", verdict="dns_error", status=None)
    add_link(archive, "https://moved.example/c", verdict="soft_404", status=200)

    summary = send_dead_link_notifications(archive)

    assert summary == NotifySummary(links=3, webhook=None, email="sent", marked=3)
    assert len(store.messages) == 1
    received = store.messages[0]
    assert received.mail_from == "archiver@blog.example"
    assert received.rcpt_tos == ["author@example.org", "editor@example.org"]
    message = received.message
    assert message["Subject"] == "3 cited links are dead"
    assert message["From"] == "archiver@blog.example"
    assert message["To"] == "author@example.org, editor@example.org"
    assert message["Message-ID"].endswith("@blog.example>")
    assert message.get_content_type() == "text/plain"
    body = received.body
    assert "1. https://gone.example/a" in body
    assert "Verdict:       not_found (HTTP 404)" in body
    assert "Failing since: 2024-03-01 09:30 UTC" in body
    assert "Cited in:      https://blog.example/p/1" in body
    assert "https://blog.example/p/2" in body
    assert "Archived copy: /web/20240102030405/https://gone.example/a" in body
    assert "2. https://down.example/b" in body and "dns_error" in body
    assert "Archived copy: (none captured)" in body
    assert "3. https://moved.example/c" in body and "soft_404 (HTTP 200)" in body


def test_email_subject_for_one_link(open_archive: Callable[..., Archive],
                                    smtp: tuple[MailStore, int]) -> None:
    store, port = smtp
    archive = open_archive(**smtp_settings(port))
    add_link(archive, "https://gone.example/a")

    send_dead_link_notifications(archive)

    assert store.messages[0].message["Subject"] == "1 cited link is dead"
    assert store.messages[0].rcpt_tos == ["author@example.org"]


def test_email_logs_in_when_a_user_is_set(open_archive: Callable[..., Archive],
                                          smtp_auth: tuple[MailStore, int]) -> None:
    store, port = smtp_auth
    archive = open_archive(**smtp_settings(port, notify__smtp_user="blogger",
                                           notify__smtp_password="s3cret"))
    add_link(archive, "https://gone.example/a")

    summary = send_dead_link_notifications(archive)

    assert summary.email == "sent"
    assert store.logins == [("blogger", "s3cret")]
    assert len(store.messages) == 1


def test_email_with_wrong_password_fails(open_archive: Callable[..., Archive],
                                         smtp_auth: tuple[MailStore, int]) -> None:
    store, port = smtp_auth
    archive = open_archive(**smtp_settings(port, notify__smtp_user="blogger",
                                           notify__smtp_password="wrong"))
    link_id = add_link(archive, "https://gone.example/a")

    summary = send_dead_link_notifications(archive)

    assert summary.email is not None
    assert summary.email.startswith("failed: SMTPAuthenticationError")
    assert store.messages == []
    assert notified_at(archive, link_id) is None


def test_starttls_refused_by_server_fails_without_sending(
        open_archive: Callable[..., Archive], smtp: tuple[MailStore, int]) -> None:
    store, port = smtp
    archive = open_archive(**smtp_settings(port, notify__smtp_starttls=True))
    link_id = add_link(archive, "https://gone.example/a")

    summary = send_dead_link_notifications(archive)

    assert summary.email is not None and summary.email.startswith("failed: ")
    assert store.messages == []
    assert notified_at(archive, link_id) is None


def test_smtp_host_without_recipients_is_not_configured(
        open_archive: Callable[..., Archive], smtp: tuple[MailStore, int]) -> None:
    store, port = smtp
    archive = open_archive(**smtp_settings(port, notify__email_to=" , "))
    link_id = add_link(archive, "https://gone.example/a")

    summary = send_dead_link_notifications(archive)

    assert summary == NotifySummary(links=1, webhook=None, email=None, marked=0)
    assert store.messages == []
    assert notified_at(archive, link_id) is None


# -- both channels and the marking rule ------------------------------------------------------


def test_both_channels_send_and_mark(open_archive: Callable[..., Archive], hook: Hook,
                                     smtp: tuple[MailStore, int]) -> None:
    store, port = smtp
    archive = open_archive(notify__webhook_url=hook.url, **smtp_settings(port))
    link_id = add_link(archive, "https://gone.example/a")

    summary = send_dead_link_notifications(archive)

    assert summary == NotifySummary(links=1, webhook="sent", email="sent", marked=1)
    assert summary.line() == ("notify: 1 newly dead link: webhook sent; e-mail sent; "
                              "1 marked as reported")
    assert len(hook.calls) == 1 and len(store.messages) == 1
    assert notified_at(archive, link_id) is not None


def test_webhook_failure_with_email_success_marks_links(
        open_archive: Callable[..., Archive], hook: Hook, smtp: tuple[MailStore, int],
        caplog: pytest.LogCaptureFixture) -> None:
    store, port = smtp
    archive = open_archive(notify__webhook_url=hook.url, **smtp_settings(port))
    link_id = add_link(archive, "https://gone.example/a")
    hook.status = 500

    summary = send_dead_link_notifications(archive)

    assert summary == NotifySummary(links=1, webhook="failed: HTTP 500", email="sent",
                                    marked=1)
    assert "webhook failed: HTTP 500" in summary.line()
    assert "HTTP 500" in caplog.text
    assert notified_at(archive, link_id) is not None
    # The author was told by e-mail: no second digest for the same link.
    send_dead_link_notifications(archive)
    assert len(store.messages) == 1 and len(hook.calls) == 1


def test_email_failure_with_webhook_success_marks_links(
        open_archive: Callable[..., Archive], hook: Hook) -> None:
    archive = open_archive(notify__webhook_url=hook.url, **smtp_settings(closed_port()))
    link_id = add_link(archive, "https://gone.example/a")

    summary = send_dead_link_notifications(archive)

    assert summary.webhook == "sent"
    assert summary.email is not None and summary.email.startswith("failed: ")
    assert summary.marked == 1
    assert notified_at(archive, link_id) is not None


def test_every_channel_failing_marks_nothing(open_archive: Callable[..., Archive],
                                             hook: Hook) -> None:
    hook.status = 503
    archive = open_archive(notify__webhook_url=hook.url, **smtp_settings(closed_port()))
    link_id = add_link(archive, "https://gone.example/a")

    summary = send_dead_link_notifications(archive)

    assert summary.webhook == "failed: HTTP 503"
    assert summary.email is not None and summary.email.startswith("failed: ")
    assert summary.marked == 0
    assert notified_at(archive, link_id) is None


def test_no_channel_configured_sends_and_marks_nothing(
        open_archive: Callable[..., Archive], hook: Hook, smtp: tuple[MailStore, int]) -> None:
    store, port = smtp
    archive = open_archive()
    link_id = add_link(archive, "https://gone.example/a")

    summary = send_dead_link_notifications(archive)

    assert summary == NotifySummary(links=1, webhook=None, email=None, marked=0)
    assert "not reported" in summary.line()
    assert notified_at(archive, link_id) is None
    assert hook.calls == [] and store.messages == []

    # Enabling a channel later still reports the link.
    enabled = open_archive(notify__webhook_url=hook.url, **smtp_settings(port))
    later = send_dead_link_notifications(enabled)
    assert later == NotifySummary(links=1, webhook="sent", email="sent", marked=1)
    assert len(hook.calls) == 1 and len(store.messages) == 1


def test_nothing_dead_sends_nothing(open_archive: Callable[..., Archive], hook: Hook,
                                    smtp: tuple[MailStore, int]) -> None:
    store, port = smtp
    archive = open_archive(notify__webhook_url=hook.url, **smtp_settings(port))
    add_link(archive, "https://alive.example/", state="alive", verdict="ok", status=200)

    assert send_dead_link_notifications(archive) == NotifySummary()
    assert hook.calls == [] and store.messages == []
