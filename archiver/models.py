"""Database tables. The WARC files are the source of truth for captures; ``captures`` is
their index and can be rebuilt from them at any time (``archiver reindex``)."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Select,
    SQLColumnExpression,
    String,
    Text,
    UniqueConstraint,
    Update,
    event,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql.elements import ColumnElement

from archiver.clock import utcnow

# Constraint names must be stable for Alembic's batch mode on SQLite.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class SourceKind(StrEnum):
    """How a source's posts are read."""

    FEED = "feed"
    SITEMAP = "sitemap"
    PAGE = "page"
    WXR = "wxr"
    FOLDER = "folder"


class LinkState(StrEnum):
    """What the author is told about a link."""

    PENDING = "pending"   # never checked
    ALIVE = "alive"
    FAILING = "failing"   # failed, but not often or long enough to be called dead
    DEAD = "dead"
    UNKNOWN = "unknown"   # blocked or rate limited: needs a human to look


class Source(Base):
    """Somewhere posts come from: a feed, sitemap, page, WordPress export or folder."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    location: Mapped[str] = mapped_column(Text, unique=True)
    title: Mapped[str | None] = mapped_column(Text)
    # The blog's own address when the posts do not say it: links to it are not references.
    site_url: Mapped[str | None] = mapped_column(Text)
    added_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_read_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(Text)

    posts: Mapped[list[Post]] = relationship(back_populates="source")


class Post(Base):
    """A blog post whose outbound references we keep."""

    __tablename__ = "posts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"),
                                           index=True)
    url: Mapped[str] = mapped_column(Text, unique=True)
    title: Mapped[str | None] = mapped_column(Text)
    published_at: Mapped[datetime | None] = mapped_column(DateTime)
    content_hash: Mapped[str] = mapped_column(String(64))
    discovered_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)

    source: Mapped[Source] = relationship(back_populates="posts")
    citations: Mapped[list[Citation]] = relationship(back_populates="post",
                                                     cascade="all, delete-orphan")


LIKE_ESCAPE = "\\"


def like_literal(text: SQLColumnExpression[str]) -> ColumnElement[str]:
    """SQL expression: ``text`` with LIKE's wildcards escaped (by :data:`LIKE_ESCAPE`), so a
    pattern built of it matches it character for character (``_`` is legal in host names)."""
    escaped: ColumnElement[str] = func.replace(text, LIKE_ESCAPE, LIKE_ESCAPE * 2)
    for wildcard in ("%", "_"):
        escaped = func.replace(escaped, wildcard, LIKE_ESCAPE + wildcard)
    return escaped


def host_in_domain(host: SQLColumnExpression[str],
                   domain: SQLColumnExpression[str]) -> ColumnElement[bool]:
    """SQL condition: ``host`` (which may carry a port) is ``domain`` or one of its subdomains."""
    name = like_literal(domain)
    return or_(host == domain, host.like(name.concat(":%"), escape=LIKE_ESCAPE),
               host.like(literal("%.").concat(name), escape=LIKE_ESCAPE),
               host.like(literal("%.").concat(name).concat(":%"), escape=LIKE_ESCAPE))


def host_ignored(host: SQLColumnExpression[str]) -> ColumnElement[bool]:
    """SQL condition: ``host`` is under one of the ignored domains (read from their table)."""
    return exists().where(host_in_domain(host, IgnoredDomain.domain))


def _host_is_ignored(context: DefaultExecutionContext) -> bool:
    """Default of ``links.ignored`` for a new row: whether its host is under an ignored domain."""
    host = context.get_current_parameters().get("host")  # type: ignore[no-untyped-call]
    if not host:
        return False
    connection = context.root_connection
    _hold_ignored_domains(connection)
    return bool(connection.scalar(select(host_ignored(literal(host)))))


_HOLD_KEY = "archiver.ignored_domains_held"


def _hold_ignored_domains(connection: Connection) -> None:
    """On PostgreSQL, keep the ignored domains as they are until this transaction ends (once
    per transaction).

    Without it a link inserted while its domain was being ignored could stay unflagged: the
    domain's UPDATE does not see the uncommitted link, and the link read the domains before
    the domain was committed. With it the domain's insert waits for the link to be committed
    (and its UPDATE then flags it), or the link waits for the domain and reads it. SQLite has
    one writer at a time already. Link inserts do not wait for one another (SHARE mode).
    """
    if connection.dialect.name != "postgresql":
        return
    transaction = connection.get_transaction()
    if transaction is None or connection.info.get(_HOLD_KEY) is transaction:
        return
    connection.exec_driver_sql("LOCK TABLE ignored_domains IN SHARE MODE")
    connection.info[_HOLD_KEY] = transaction


class Link(Base):
    """One outbound URL (canonical form), however many posts cite it."""

    __tablename__ = "links"
    # Links of a state, not ignored, in ID order (the links page's filter, the dead links to
    # report) read from the index alone, not from the wide rows; and counts by state without
    # the ignored links (the dashboard's, the daily snapshot's) from a small index: with
    # few distinct keys PostgreSQL stores each key once, with the list of its rows.
    __table_args__ = (Index("ix_links_ignored_state_id_host", "ignored", "state", "id", "host"),
                      Index("ix_links_ignored_state", "ignored", "state"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(Text, unique=True)
    url_key: Mapped[str] = mapped_column(Text, index=True)  # SURT key, as in the capture index
    host: Mapped[str] = mapped_column(String(255), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    state: Mapped[str] = mapped_column(String(16), default=LinkState.PENDING)
    # The host is an ignored domain or under one: set when the link is inserted, and again for
    # a domain's links when the domain is ignored or not (the IgnoredDomain events below), so
    # filters read a column rather than match every row against every domain.
    ignored: Mapped[bool] = mapped_column(Boolean, default=_host_is_ignored,
                                          server_default=false())
    last_verdict: Mapped[str | None] = mapped_column(String(32))
    http_status: Mapped[int | None] = mapped_column(Integer)
    final_url: Mapped[str | None] = mapped_column(Text)
    last_checked_at: Mapped[datetime | None] = mapped_column(DateTime)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    first_failure_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_alive_at: Mapped[datetime | None] = mapped_column(DateTime)
    drift: Mapped[float | None] = mapped_column(Float)
    # Text sketches (see archiver/fingerprint.py): of the first capture, and of the latest page.
    first_fingerprint: Mapped[str | None] = mapped_column(Text)
    last_fingerprint: Mapped[str | None] = mapped_column(Text)
    # The payload digest of the page body last_fingerprint was made from: a recapture of the
    # same bytes reuses the sketch instead of making it again.
    sketched_digest: Mapped[str | None] = mapped_column(String(64))
    # "Not broken": the author's override holds while the response stays the one they saw.
    override_response: Mapped[str | None] = mapped_column(String(64))
    overridden_at: Mapped[datetime | None] = mapped_column(DateTime)
    dead_notified_at: Mapped[datetime | None] = mapped_column(DateTime)
    # A notifier sending this link's dead-link notice holds it until then (archiver/notify.py):
    # another notifier running at the same time leaves it alone, so the notice goes out once.
    dead_notice_lease_until: Mapped[datetime | None] = mapped_column(DateTime)
    dead_notice_lease_owner: Mapped[str | None] = mapped_column(String(64))
    # ETag, Last-Modified, Content-Length last seen (capture or check): unchanged means a HEAD
    # answer is enough; changed means the body is read again for its fingerprint.
    validators: Mapped[dict[str, str] | None] = mapped_column(JSON)

    next_check_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    check_lease_until: Mapped[datetime | None] = mapped_column(DateTime)
    check_lease_owner: Mapped[str | None] = mapped_column(String(64))

    next_capture_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    capture_lease_until: Mapped[datetime | None] = mapped_column(DateTime)
    capture_lease_owner: Mapped[str | None] = mapped_column(String(64))
    last_capture_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_capture_outcome: Mapped[str | None] = mapped_column(String(16))
    last_capture_error: Mapped[str | None] = mapped_column(Text)

    citations: Mapped[list[Citation]] = relationship(back_populates="link")
    checks: Mapped[list[Check]] = relationship(back_populates="link",
                                               order_by="Check.checked_at.desc()")


class Citation(Base):
    """A post citing a link: where, how it was spelled, and with what words."""

    __tablename__ = "citations"
    __table_args__ = (UniqueConstraint("post_id", "link_id", "href",
                                       name="uq_citations_post_link_href"),
                      # From links to the posts citing them without reading the rows.
                      Index("ix_citations_link_post", "link_id", "post_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), index=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("links.id", ondelete="CASCADE"), index=True)
    href: Mapped[str] = mapped_column(Text)  # as written in the post, for display
    element: Mapped[str] = mapped_column(String(16))  # a, iframe, video, ...
    anchor_text: Mapped[str | None] = mapped_column(Text)
    context: Mapped[str | None] = mapped_column(Text)

    post: Mapped[Post] = relationship(back_populates="citations")
    link: Mapped[Link] = relationship(back_populates="citations")


class Check(Base):
    """One health check of a link: its verdict and the evidence for it."""

    __tablename__ = "checks"
    __table_args__ = (Index("ix_checks_link_time", "link_id", "checked_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("links.id", ondelete="CASCADE"))
    checked_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    verdict: Mapped[str] = mapped_column(String(32))
    http_status: Mapped[int | None] = mapped_column(Integer)
    final_url: Mapped[str | None] = mapped_column(Text)
    elapsed_ms: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    fingerprint: Mapped[str | None] = mapped_column(Text)
    # Identifies "the same response" (verdict, status, final URL) for the author's overrides.
    response_key: Mapped[str | None] = mapped_column(String(64))

    link: Mapped[Link] = relationship(back_populates="checks")


class Capture(Base):
    """Index row of one WARC response, revisit or resource record: where its bytes live."""

    __tablename__ = "captures"
    __table_args__ = (
        Index("ix_captures_key_time", "url_key", "captured_at"),
        UniqueConstraint("warc_file", "offset", name="uq_captures_file_offset"),
        # Key prefix searches (replay's fuzzy match): PostgreSQL can use a plain index for
        # LIKE 'prefix%' only under the C collation; text_pattern_ops works under any. The
        # operator class is given in migration 0004 only (a test checks it is there): naming
        # it here, as postgresql_ops, loads SQLAlchemy's PostgreSQL dialect in every process,
        # SQLite ones too, about 50 ms of every start.
        Index("ix_captures_url_key_pattern", "url_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    url_key: Mapped[str] = mapped_column(Text)
    captured_at: Mapped[datetime] = mapped_column(DateTime)
    record_type: Mapped[str] = mapped_column(String(16))
    status: Mapped[int | None] = mapped_column(Integer)
    mime: Mapped[str | None] = mapped_column(String(255))
    payload_digest: Mapped[str | None] = mapped_column(String(128), index=True)
    warc_file: Mapped[str] = mapped_column(Text)  # name relative to the WARC folder
    offset: Mapped[int] = mapped_column(BigInteger)
    length: Mapped[int] = mapped_column(BigInteger)
    record_id: Mapped[str] = mapped_column(String(80))
    truncated: Mapped[str | None] = mapped_column(String(16))


class IgnoredDomain(Base):
    """A domain the author asked not to check (its subdomains included)."""

    __tablename__ = "ignored_domains"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    domain: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


@event.listens_for(IgnoredDomain, "after_insert")
@event.listens_for(IgnoredDomain, "after_delete")
def _domain_changed(_mapper: Any, connection: Connection, target: IgnoredDomain) -> None:
    """Keep ``links.ignored`` of the domain's links in step when it is ignored or not."""
    connection.execute(refresh_ignored(target.domain))


class DailyStateCount(Base):
    """How many links were in each state at the end of a day, for the dashboard's chart."""

    __tablename__ = "daily_state_counts"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    state: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)


class DashboardFigures(Base):
    """The dashboard's figures as last counted (one row; see ``archiver.figures``)."""

    __tablename__ = "dashboard_figures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    counted_at: Mapped[datetime] = mapped_column(DateTime)
    cost_ms: Mapped[float] = mapped_column(Float)  # how long counting took
    mark: Mapped[list[int]] = mapped_column(JSON)  # the change mark they were counted at
    figures: Mapped[dict[str, Any]] = mapped_column(JSON)


class SiteProbe(Base):
    """How a site answered a random sibling URL (the soft-404 probe), kept for
    ``health.probe_cache`` so later runs and other workers need not ask again."""

    __tablename__ = "site_probes"

    key: Mapped[str] = mapped_column(Text, primary_key=True)  # host and parent path
    probed_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    url: Mapped[str] = mapped_column(Text)
    status: Mapped[int] = mapped_column(Integer)
    final_url: Mapped[str | None] = mapped_column(Text)
    sketch: Mapped[str | None] = mapped_column(Text)


# The posts page's order (newest first, undated last) read from an index, not sorted.
Index("ix_posts_published_id", Post.published_at.desc().nulls_last(), Post.id.desc())


def link_is_ignored() -> ColumnElement[bool]:
    """SQL condition: the link's host is an ignored domain or one of its subdomains (the
    ``ignored`` flag, which the indexes on links begin with)."""
    return Link.ignored.expression


def state_counts() -> Select[str, int]:
    """Query: how many links are in each state, those of ignored domains left out."""
    return (select(Link.state, func.count().label("count")).where(~link_is_ignored())
            .group_by(Link.state))


def refresh_ignored(domain: str) -> Update:
    """UPDATE statement: the ignored flag of the links under ``domain``, read again from the
    ignored domains (after one was added or removed; another may still cover a subdomain)."""
    return (update(Link).where(host_in_domain(Link.host, literal(domain)))
            .values(ignored=host_ignored(Link.host))
            .execution_options(synchronize_session=False))


class AuthorSession(Base):
    """A logged-in author's session, kept here so that logging out or its expiry ends it in
    every web process; the signed cookie holds only its random ID."""

    __tablename__ = "author_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the ID
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class LoginAttempt(Base):
    """One login attempt from an address, recorded before its password is checked (so
    parallel requests and web processes share one limit); a correct password removes it."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_address_time", "address", "attempted_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(255))
    attempted_at: Mapped[datetime] = mapped_column(DateTime, index=True)
