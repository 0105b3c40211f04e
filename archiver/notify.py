"""Telling the author about links that became dead: a webhook JSON POST and an e-mail digest.

Each round picks the dead links not yet reported (``dead_notified_at`` unset) that the author
has not marked "not broken", sends them on every configured channel, and marks them reported.

Once only, even with two notifiers at the same time (the scheduler and an ``archiver check``
typed at a shell): a round first claims the links it will send, in one UPDATE that takes only
links no other round holds (``dead_notice_lease_until`` unset or past) and stamps them with
its own owner token, then reads back what it got.  Another round running meanwhile claims none
of them, so it sends none of them.  After sending, the claim is given back (and the links
marked reported if the notice got through), so a failed notice is sent again by a later round;
a round that dies while sending holds its links until the lease runs out, then they are sent
by a later round.

Marking rule: a link is marked once its notice got through on *at least one* configured
channel.  The failure of the other channel is logged and shown in the summary, but the link is
not sent again: retrying would repeat the notice on the channel that did work in every round
(the scheduler runs often) for as long as the other one stays broken, and the author has been
told.  When every configured channel fails nothing is marked, so the next round tries again.
When no channel is configured nothing is marked either, so enabling one later still reports
the links.  A link that comes back alive has ``dead_notified_at`` cleared (see
:func:`archiver.health.apply_verdict`), so dying again is news again.
"""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, or_, select, update
from sqlalchemy.orm import Session

from archiver.archive import Archive
from archiver.clock import utcnow
from archiver.models import Citation, Link, LinkState, link_is_ignored
from archiver.net.client import FetchError
from archiver.settings import Settings
from archiver.wording import plural

log = logging.getLogger(__name__)

MAX_LINKS_PER_ROUND = 500
WEBHOOK_EVENT = "links.dead"
WEBHOOK_FIELDS = ("url", "verdict", "http_status", "final_url", "first_failure_at",
                  "archived_url", "posts")
WEBHOOK_MAX_RESPONSE_BYTES = 64 * 1024  # the answer is not read; keep little of it
# How long a round holds the links it is sending: far longer than a send can take (the webhook
# has fetch.timeout in all, SMTP fetch.timeout per step), so that no other round sends them
# too; it only matters when a round dies while sending, and delays those links by that much.
NOTICE_LEASE_MIN = timedelta(minutes=15)
NOTICE_LEASE_TIMEOUTS = 10
_MAX_REASON = 200


@dataclass
class NotifySummary:
    """What one notification round did."""

    links: int = 0  # links reported in this round (found, when no channel is configured)
    webhook: str | None = None  # "sent", "failed: <reason>" or None when not configured
    email: str | None = None  # same
    marked: int = 0  # links marked as reported

    def line(self) -> str:
        """One-line human summary."""
        if self.links == 0:
            return "notify: no newly dead links"
        noun = plural(self.links, "newly dead link")
        if self.webhook is None and self.email is None:
            return (f"notify: {noun} not reported: no webhook (notify.webhook_url) or e-mail "
                    "(notify.smtp_host and notify.email_to) configured")
        channels = [f"{name} {outcome}" for name, outcome in
                    (("webhook", self.webhook), ("e-mail", self.email)) if outcome is not None]
        return f"notify: {noun}: {'; '.join(channels)}; {self.marked} marked as reported"


def recipients(settings: Settings) -> list[str]:
    """The digest's recipients: ``notify.email_to`` split on commas, blanks dropped."""
    raw: str = settings["notify.email_to"]
    return [address.strip() for address in raw.split(",") if address.strip()]


def email_configured(settings: Settings) -> bool:
    """True when an SMTP host and at least one recipient are set."""
    return bool(str(settings["notify.smtp_host"]).strip()) and bool(recipients(settings))


def webhook_configured(settings: Settings) -> bool:
    """True when a webhook URL is set."""
    return bool(str(settings["notify.webhook_url"]).strip())


def send_dead_link_notifications(archive: Archive, *,
                                 limit: int = MAX_LINKS_PER_ROUND) -> NotifySummary:
    """Tell the author about links newly dead since the last notice, by webhook and e-mail."""
    settings = archive.settings
    use_webhook = webhook_configured(settings)
    use_email = email_configured(settings)
    if not (use_webhook or use_email):
        return _unreported(archive, limit)
    owner = uuid.uuid4().hex
    with archive.db.session() as session:
        links = _claim(session, owner, limit, utcnow() + notice_lease(settings))
        if not links:  # the usual round: no news, and no need to load the report's code
            return NotifySummary(links=0)
        from archiver.report import link_rows

        rows = link_rows(session, links)
    summary = NotifySummary(links=len(rows))
    delivered = False
    try:
        if use_webhook:
            summary.webhook = _post_webhook(archive, rows)
            delivered = delivered or summary.webhook == "sent"
        if use_email:
            summary.email = _send_email(settings, rows)
            delivered = delivered or summary.email == "sent"
    finally:  # even on an unexpected error: the links must not wait for the lease to run out
        summary.marked = _settle(archive, owner, [row["id"] for row in rows], delivered)
    log.log(logging.INFO if delivered else logging.WARNING, "%s", summary.line())
    return summary


def pending_query(limit: int = MAX_LINKS_PER_ROUND) -> Select[Any]:
    """Dead links not yet reported, not marked "not broken", not on an ignored domain, cited
    by a post."""
    return select(Link).where(*_pending()).order_by(Link.id).limit(limit)


def notice_lease(settings: Settings) -> timedelta:
    """How long a round holds the links it is sending."""
    timeout = timedelta(seconds=float(settings["fetch.timeout"]))
    return max(NOTICE_LEASE_MIN, NOTICE_LEASE_TIMEOUTS * timeout)


def _pending() -> tuple[ColumnElement[bool], ...]:
    # Cited by a post, as ``archiver report`` lists links: one the author removed from every
    # post is nothing for them to fix.
    return (Link.state == LinkState.DEAD, Link.dead_notified_at.is_(None),
            Link.override_response.is_(None), ~link_is_ignored(),
            exists().where(Citation.link_id == Link.id))


def _unreported(archive: Archive, limit: int) -> NotifySummary:
    """With no channel configured: how many links would be reported (nothing is claimed)."""
    with archive.db.session() as session:
        links: list[Link] = list(session.scalars(pending_query(limit)))
        if not links:
            return NotifySummary(links=0)
        from archiver.report import link_rows

        summary = NotifySummary(links=len(link_rows(session, links)))
    if summary.links:
        log.info("%s", summary.line())
    return summary


def _claim(session: Session, owner: str, limit: int, until: datetime) -> list[Link]:
    """Lease to ``owner`` up to ``limit`` pending links no other round holds; return them."""
    now = utcnow()
    free = or_(Link.dead_notice_lease_until.is_(None), Link.dead_notice_lease_until < now)
    candidates = select(Link.id).where(*_pending(), free).order_by(Link.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        # Pass over rows another round is claiming right now rather than wait for it.
        candidates = candidates.with_for_update(skip_locked=True)
    # The conditions again on the updated row itself: on PostgreSQL a round that waited for
    # another's claim re-checks them on the row as that claim left it, and so skips it.
    session.execute(
        update(Link)
        .where(Link.id.in_(candidates.scalar_subquery()), *_pending(), free)
        .values(dead_notice_lease_until=until, dead_notice_lease_owner=owner)
        .execution_options(synchronize_session=False))
    return list(session.scalars(
        select(Link).where(Link.dead_notice_lease_owner == owner).order_by(Link.id)))


def _settle(archive: Archive, owner: str, ids: Sequence[int], delivered: bool) -> int:
    """Give back ``owner``'s claim; first mark the links reported when ``delivered``."""
    with archive.db.session() as session:
        marked = _mark(session, owner, ids) if delivered else 0
        session.execute(
            update(Link).where(Link.dead_notice_lease_owner == owner)
            .values(dead_notice_lease_until=None, dead_notice_lease_owner=None)
            .execution_options(synchronize_session=False))
    return marked


def _mark(session: Session, owner: str, ids: Sequence[int]) -> int:
    """Mark links reported, unless they came back (or were overridden) meanwhile, or another
    round took them over (this one outlived its lease: that one reports them)."""
    result = session.execute(
        update(Link)
        .where(Link.id.in_(ids), Link.dead_notice_lease_owner == owner,
               Link.state == LinkState.DEAD,
               Link.dead_notified_at.is_(None), Link.override_response.is_(None))
        .values(dead_notified_at=utcnow())
        .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


# -- webhook ---------------------------------------------------------------------------------

def webhook_payload(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON document POSTed to the webhook."""
    return {
        "event": WEBHOOK_EVENT,
        "count": len(rows),
        "links": [{key: row[key] for key in WEBHOOK_FIELDS} for row in rows],
    }


def _post_webhook(archive: Archive, rows: list[dict[str, Any]]) -> str:
    url = str(archive.settings["notify.webhook_url"]).strip()
    body = json.dumps(webhook_payload(rows), ensure_ascii=False).encode("utf-8")
    headers = {"Content-Type": "application/json; charset=utf-8",
               "Accept": "application/json, */*;q=0.5"}
    try:
        result = archive.client().fetch(url, "POST", body=body, headers=headers,
                                        follow_redirects=False,
                                        max_body_bytes=WEBHOOK_MAX_RESPONSE_BYTES)
    except FetchError as exc:
        # The URL may carry a token (the setting is secret): keep it out of logs and summary.
        log.warning("dead-link webhook failed: %s (%s)", exc.verdict,
                    _redact(exc.message, url))
        return f"failed: {exc.verdict}"
    status = result.final.status
    if 200 <= status < 300:
        return "sent"
    log.warning("dead-link webhook answered HTTP %d", status)
    return f"failed: HTTP {status}"


def _redact(message: str, url: str) -> str:
    """Remove the webhook URL, and its path and query, from an error message."""
    text = message.replace(url, "<webhook>")
    rest = url.split("://", 1)[-1]
    path = rest[rest.find("/"):] if "/" in rest else ""
    if len(path) > 1:
        text = text.replace(path, "<path>")
    return _shorten(text)


# -- e-mail ----------------------------------------------------------------------------------

def digest_subject(count: int) -> str:
    """Subject of the digest: ``1 cited link is dead``, ``3 cited links are dead``."""
    return f"{count} cited link is dead" if count == 1 else f"{count} cited links are dead"


def digest_body(rows: list[dict[str, Any]]) -> str:
    """Plain-text digest: each link, its verdict, since when, citing posts, archived copy."""
    count = len(rows)
    intro = ("This cited link stopped working and is now considered dead:" if count == 1 else
             f"These {count} cited links stopped working and are now considered dead:")
    lines = [intro, ""]
    for number, row in enumerate(rows, 1):
        verdict = row["verdict"] or "unknown"
        if row["http_status"]:
            verdict += f" (HTTP {row['http_status']})"
        lines.append(f"{number}. {row['url']}")
        lines.append(f"   Verdict:       {verdict}")
        if row["final_url"] and row["final_url"] != row["url"]:
            lines.append(f"   Ends at:       {row['final_url']}")
        lines.append(f"   Failing since: {_human_time(row['first_failure_at'])}")
        posts: list[str] = row["posts"]
        if posts:
            lines.append(f"   Cited in:      {posts[0]}")
            lines.extend(f"                  {post}" for post in posts[1:])
        else:
            lines.append("   Cited in:      (no post cites it any more)")
        lines.append(f"   Archived copy: {row['archived_url'] or '(none captured)'}")
        lines.append("")
    lines += [
        "Archived copies are paths on your archive's web interface.",
        "If a link is not broken, mark it so there; it will not be reported again.",
        "",
        "-- ",
        "link-archiver",
    ]
    return "\n".join(lines) + "\n"


def digest_message(settings: Settings, rows: list[dict[str, Any]]) -> EmailMessage:
    """The digest as an e-mail message addressed from the notify settings."""
    sender = str(settings["notify.email_from"]).strip()
    message = EmailMessage()
    message["Subject"] = digest_subject(len(rows))
    message["From"] = sender
    message["To"] = ", ".join(recipients(settings))
    message["Date"] = formatdate(usegmt=True)
    # A domain given here spares make_msgid a (possibly slow) host name lookup.
    domain = sender.rsplit("@", 1)[-1].strip(" >") if "@" in sender else "localhost"
    message["Message-ID"] = make_msgid("dead-links", domain=domain or "localhost")
    message.set_content(digest_body(rows))
    return message


def _send_email(settings: Settings, rows: list[dict[str, Any]]) -> str:
    to = recipients(settings)
    host = str(settings["notify.smtp_host"]).strip()
    port: int = settings["notify.smtp_port"]
    user: str = settings["notify.smtp_user"]
    try:
        message = digest_message(settings, rows)
        with smtplib.SMTP(host, port, timeout=settings["fetch.timeout"]) as smtp:
            if settings["notify.smtp_starttls"]:
                smtp.starttls(context=ssl.create_default_context())
            if user:
                smtp.login(user, settings["notify.smtp_password"])
            refused = smtp.send_message(message, to_addrs=to)
    except (smtplib.SMTPException, OSError, ValueError) as exc:
        reason = _shorten(f"{type(exc).__name__}: {exc}")
        log.warning("dead-link e-mail via %s:%d failed: %s", host, port, reason)
        return f"failed: {reason}"
    if refused:
        log.warning("dead-link e-mail refused for %s", ", ".join(sorted(refused)))
    return "sent"


# -- helpers ---------------------------------------------------------------------------------

def _human_time(iso: str | None) -> str:
    if not iso:
        return "unknown"
    return iso.removesuffix("Z").replace("T", " ")[:16] + " UTC"


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."
