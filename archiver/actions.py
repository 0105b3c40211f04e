"""What the author can do about a link: recheck it, overrule a false alarm, ignore a domain."""

from __future__ import annotations

from contextlib import suppress

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from archiver import figures
from archiver.archive import Archive
from archiver.clock import utcnow
from archiver.errors import ArchiverError
from archiver.health import SUCCESS_VERDICTS, apply_verdict
from archiver.jobs import check_link
from archiver.models import Check, IgnoredDomain, Link, LinkState
from archiver.settings import Settings
from archiver.verdicts import Verdict


class ActionError(ArchiverError):
    """An action that cannot be done (unknown link, bad domain)."""


def recheck(archive: Archive, link_id: int) -> str:
    """Check a link now, whatever its schedule; return the verdict."""
    verdict = check_link(archive, link_id)
    if verdict is None:
        raise ActionError(f"no link #{link_id}")
    return verdict


def mark_not_broken(archive: Archive, link_id: int) -> None:
    """The author says the link works: alive until the site's answer changes."""
    with archive.db.session() as session:
        link = session.get(Link, link_id)
        if link is None:
            raise ActionError(f"no link #{link_id}")
        key = session.scalar(select(Check.response_key).where(Check.link_id == link_id)
                             .order_by(Check.checked_at.desc()).limit(1))
        if key is None:
            raise ActionError("the link has not been checked yet")
        link.override_response = key
        link.overridden_at = utcnow()
        link.state = LinkState.ALIVE
        link.consecutive_failures = 0
        link.first_failure_at = None
        figures.forget(session)  # a state changed without a new row: count again


def clear_override(archive: Archive, link_id: int) -> None:
    """Undo "not broken": the link is in the state its checks imply, and is checked soon."""
    with archive.db.session() as session:
        link = session.get(Link, link_id)
        if link is None:
            raise ActionError(f"no link #{link_id}")
        link.override_response, link.overridden_at = None, None
        restate_from_checks(session, link, archive.settings)
        link.next_check_at = utcnow()
        figures.forget(session)  # a state changed without a new row: count again


def restate_from_checks(session: Session, link: Link, settings: Settings) -> None:
    """Put the link's state, failure counters and last-alive time back where its stored
    checks lead without an override: those since its last success are applied again."""
    since = session.scalar(select(func.max(Check.checked_at)).where(
        Check.link_id == link.id, Check.verdict.in_([str(v) for v in SUCCESS_VERDICTS])))
    query = (select(Check.verdict, Check.checked_at).where(Check.link_id == link.id)
             .order_by(Check.checked_at, Check.id))
    checks = session.execute(query if since is None else
                             query.where(Check.checked_at >= since)).all()
    if not checks:
        return
    notified = link.dead_notified_at  # replaying a success must not make old news new
    link.consecutive_failures, link.first_failure_at, link.last_alive_at = 0, None, None
    known = {str(verdict) for verdict in Verdict}
    for verdict, checked_at in checks:
        if verdict in known:  # a verdict an older version stored and this one dropped: skip
            apply_verdict(link, Verdict(verdict), checked_at, settings)
    link.dead_notified_at = notified


def normalise_domain(text: str) -> str:
    """A bare lower-case domain from what the author typed (a URL is accepted too)."""
    domain = text.strip().lower()
    if "://" in domain:
        domain = domain.split("://", 1)[1]
    domain = domain.split("/", 1)[0].removeprefix("www.")
    labels = domain.split(".")
    if not domain or len(domain) > 253 or not all(
            label and len(label) <= 63 and label.replace("-", "").replace("_", "").isalnum()
            for label in labels):
        raise ActionError(f"not a domain: {text!r}")
    return domain


def ignore_domain(archive: Archive, text: str) -> str:
    """Stop checking and reporting links to a domain and its subdomains."""
    domain = normalise_domain(text)
    with archive.db.session() as session:
        if session.scalar(select(IgnoredDomain).where(IgnoredDomain.domain == domain)) is None:
            session.add(IgnoredDomain(domain=domain))  # its links are flagged as it is stored
            figures.forget(session)
    return domain


def unignore_domain(archive: Archive, text: str) -> str | None:
    """Check and report a domain's links again (those no other ignored domain covers).

    ``text`` is read as :func:`ignore_domain` reads it; returns the domain no longer
    ignored, or None when it was not ignored.
    """
    names = {text.strip()}  # as given too, so that no stored name is beyond removal
    with suppress(ActionError):
        names.add(normalise_domain(text))
    with archive.db.session() as session:
        found = list(session.scalars(select(IgnoredDomain)
                                     .where(IgnoredDomain.domain.in_(sorted(names)))))
        for domain in found:
            session.delete(domain)  # deleted through the ORM, so its links are unflagged
        if found:
            figures.forget(session)
        return found[0].domain if found else None


def ignored_domains(archive: Archive) -> list[str]:
    """Every ignored domain, sorted."""
    with archive.db.session() as session:
        return list(session.scalars(select(IgnoredDomain.domain).order_by(IgnoredDomain.domain)))
