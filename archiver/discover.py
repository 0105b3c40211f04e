"""Read every source, store new or changed posts, and record the links they cite."""

from __future__ import annotations

import hashlib
import html as html_lib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from archiver import figures
from archiver.archive import Archive
from archiver.clock import utcnow
from archiver.errors import ArchiverError, SourceError
from archiver.extract import EXTRACTION_RULES, ExtractedLink, extract_links
from archiver.health import apply_verdict
from archiver.models import Citation, Link, Post, Source, SourceKind
from archiver.settings import Settings
from archiver.sources import PostData, detect_source, read_posts
from archiver.sources.folder import Draft
from archiver.sources.page import read_page
from archiver.urls import FETCHABLE_SCHEMES, host_of, scheme_of, site_or_empty, url_key
from archiver.verdicts import Verdict

log = logging.getLogger(__name__)
# Mixed into the hash of a summary-only entry stored without its page's references.
_PAGE_UNREAD = "page unread"


@dataclass
class DiscoverSummary:
    """What one discovery run found."""

    sources: int = 0
    posts_new: int = 0
    posts_changed: int = 0
    posts_reread: int = 0  # unchanged, read again because the extraction rules changed
    posts_unpublished: int = 0  # removed: their files are drafts again
    links_new: int = 0
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One-line human summary."""
        reread = (f", {self.posts_reread} read again under new extraction rules"
                  if self.posts_reread else "")
        unpublished = (f", {self.posts_unpublished} drafts again (removed)"
                       if self.posts_unpublished else "")
        text = (f"discover: {self.sources} sources, {self.posts_new} new posts, "
                f"{self.posts_changed} changed{reread}{unpublished}, "
                f"{self.links_new} new links")
        return text + (f", {len(self.errors)} sources failed" if self.errors else "")


def content_hash(html: str, rules: int | None = None) -> str:
    """The stored hash of a post's HTML read under extraction rules ``rules`` (the current
    ones by default): when the rules change, every post is read again once and its citations
    replaced by what the new rules find.  The first rules hashed the HTML alone."""
    rules = EXTRACTION_RULES if rules is None else rules
    text = html if rules == 1 else f"rules {rules}\n{html}"
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()


def add_source(archive: Archive, location: str,
               site_url: str | None = None) -> tuple[Source, bool]:
    """Detect the kind of ``location`` and register it; an unknown kind raises SourceError.
    A file or folder is stored as an absolute path, so any later run finds it; a blog's home
    page that names its feed is registered as that feed (the source's location says so).
    ``site_url`` is the blog's own address (links to it are not references); given for a
    source already registered, it replaces the one stored and its posts are read again at the
    next run.
    Returns the source and whether it is new (False: it was already registered)."""
    location = location.strip()
    if not location:
        raise SourceError("no source given: give a feed, sitemap or page URL, a WordPress "
                          "export file or a folder")
    site = _site_address(site_url) if site_url is not None else None
    kind, location = detect_source(location, archive.client())
    if kind in (SourceKind.FOLDER, SourceKind.WXR):
        location = str(Path(location).expanduser().resolve())
    with archive.db.session() as session:
        existing = session.scalar(select(Source).where(Source.location == location))
        if existing is not None:
            if site is not None and site != existing.site_url:
                existing.site_url = site
                # What is the blog's own changed: its posts' citations are found again.
                session.execute(update(Post).where(Post.source_id == existing.id)
                                .values(content_hash=""))
            return existing, False
        source = Source(kind=kind, location=location, site_url=site)
        session.add(source)
    return source, True


def _site_address(site_url: str) -> str:
    """A ``--site`` value checked: an http(s) address with a host (SourceError otherwise)."""
    site = site_url.strip()
    if scheme_of(site) not in FETCHABLE_SCHEMES or not site_or_empty(site):
        raise SourceError(f"--site {site_url!r}: give the blog's address, such as "
                          "https://myblog.example/")
    return site


def _link_for(session: Session, found: ExtractedLink, settings: Settings) -> tuple[Link, bool]:
    """The Link row for an extracted reference, created when new (safe against a racing run)."""
    url = found.url or found.href
    link = session.scalar(select(Link).where(Link.url == url))
    if link is not None:
        return link, False
    now = utcnow()
    link = Link(url=url, url_key=url_key(url), host=host_of(url) if found.url else "",
                created_at=now)
    if found.url is not None:
        link.next_check_at = now
        link.next_capture_at = now
    try:
        with session.begin_nested():
            session.add(link)
    except IntegrityError:
        existing = session.scalar(select(Link).where(Link.url == url))
        assert existing is not None
        return existing, False
    if found.verdict is not None:
        apply_verdict(link, Verdict(found.verdict), now, settings)
        link.next_capture_at = None
    return link, True


def store_post(archive: Archive, session: Session, source: Source, data: PostData,
               summary: DiscoverSummary) -> None:
    """Insert or update one post and replace its citations when its content changed; a
    summary-only entry whose page cannot be read leaves a stored post as it was."""
    digest = content_hash(data.html)
    # Stored under the address listed for it (a feed's /posts/a, the page at /posts/a/), it
    # keeps that name: one post, whichever source read it first.
    post = session.scalars(select(Post).where(Post.url.in_(data.names))
                           .order_by(Post.url != data.url, Post.id)).first()
    if post is not None and post.content_hash == digest:
        return
    html = data.html
    if data.summary_only and _on_own_site(data.url, source):
        whole = _whole_post(archive, data)
        if whole is None and post is not None:
            return  # kept as read before: the summary has only some of its references
        if whole is None:
            # Stored with the summary's references, under a hash no entry has: the page is
            # asked for again at the next run.
            digest = content_hash(f"{_PAGE_UNREAD}\n{data.html}")
        else:
            html = whole
    if post is None:
        post = Post(source_id=source.id, url=data.url, content_hash=digest)
        session.add(post)
        summary.posts_new += 1
    else:
        if post.content_hash in {content_hash(data.html, rules)
                                 for rules in range(1, EXTRACTION_RULES)}:
            summary.posts_reread += 1
        else:
            summary.posts_changed += 1
        post.content_hash = digest
        post.updated_at = utcnow()
        post.citations.clear()
        session.flush()
    post.title = data.title
    post.published_at = data.published_at
    seen: set[tuple[int, str]] = set()
    for found in extract_links(html, data.url, source.site_url):
        link, created = _link_for(session, found, archive.settings)
        summary.links_new += int(created)
        key = (link.id, found.href)
        if key in seen:
            continue
        seen.add(key)
        post.citations.append(Citation(link=link, href=found.href, element=found.element,
                                        anchor_text=found.anchor_text, context=found.context))


def _on_own_site(url: str, source: Source) -> bool:
    """Whether a post's page is on the blog's own site, when the source says which it is
    (the feed reader has checked the feed's own site already)."""
    return not source.site_url or site_or_empty(url) == site_or_empty(source.site_url)


def _whole_post(archive: Archive, data: PostData) -> str | None:
    """A summary-only feed entry as a whole post: its page's content, then the summary (a
    link-blog entry's cited link is there); None when the page cannot be read.
    Only new or changed entries come here, so an unchanged feed costs no page requests."""
    try:
        page = read_page(archive.client(), data.url)
    except SourceError as exc:
        log.warning("%s: the post's page is read again at the next run: %s", data.url, exc)
        return None
    content = page.html
    if not content.startswith("<base"):  # the page's own base, or where the page was
        content = f'<base href="{html_lib.escape(page.url, quote=True)}">{content}'
    return content + data.html


def _unpublish(session: Session, source: Source, draft: Draft,
               summary: DiscoverSummary) -> None:
    """Remove the post a file stood for before it turned back into a draft (an embargo, a
    legal request): a draft's title is not shown and its links are no references.  Its
    links stay in the archive, cited by no post, as a link taken out of a post does."""
    for post in session.scalars(select(Post).where(Post.source_id == source.id,
                                                   Post.url.in_(draft.names))):
        log.info("%s: %s is a draft again: removed", source.location, post.url)
        session.delete(post)
        summary.posts_unpublished += 1
        figures.forget(session)  # a post and its citations gone: no new row says so


def discover(archive: Archive,
             progress: Callable[[int, int], None] | None = None) -> DiscoverSummary:
    """Read every source once; one failing source is reported and does not stop the others."""
    summary = DiscoverSummary()
    with archive.db.session() as session:
        source_ids = list(session.scalars(select(Source.id).order_by(Source.id)))
    # A post read twice in one run (a duplicated feed entry, a feed and a sitemap listing it)
    # keeps its first copy: storing each in turn would make it change back and forth.
    read_urls: set[str] = set()
    for done, source_id in enumerate(source_ids, start=1):
        summary.sources += 1
        with archive.db.session() as session:
            source = session.get(Source, source_id)
            if source is None:
                continue
            try:
                for data in read_posts(SourceKind(source.kind), source.location,
                                       archive.client()):
                    if isinstance(data, Draft):
                        if not data.names & read_urls:
                            _unpublish(session, source, data, summary)
                            session.commit()
                        continue
                    if data.names & read_urls:
                        log.info("%s: %s was already read in this run", source.location,
                                 data.url)
                        continue
                    read_urls |= data.names
                    store_post(archive, session, source, data, summary)
                    session.commit()  # each post kept as soon as it is read
                source.last_error = None
            except ArchiverError as exc:
                session.rollback()
                source = session.get(Source, source_id)
                assert source is not None
                source.last_error = str(exc)
                message = str(exc)  # most errors name the source already
                summary.errors.append(message if source.location in message
                                      else f"{source.location}: {message}")
                log.warning("cannot read source %s: %s", source.location, exc)
            source.last_read_at = utcnow()
        if progress:
            progress(done, len(source_ids))
    return summary
