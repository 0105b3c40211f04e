"""Sketches made by an earlier version: a link's drift survives the change of algorithm."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event, select

from archiver.archive import Archive
from archiver.baseline import FIRST_CAPTURES
from archiver.clock import utcnow
from archiver.demo.fixtureweb import Site
from archiver.fingerprint import body_sketch, is_current, similarity
from archiver.jobs import WorkKind, capture_link, run_due
from archiver.models import Capture, Link, SiteProbe
from archiver.site_probes import stored_probes
from archiver.warc.indexer import reindex
from tests.test_capture import add_link
from tests.test_override import link_of

HTML = "text/html; charset=utf-8"
FIRST = "<html><body><p>" + " ".join(f"first{i}" for i in range(80)) + "</p></body></html>"
REWRITTEN = FIRST.replace("first1", "later").replace("first2", "other").replace(
    "first3", "words")
OLD = "a8d06a514017cc5,196a164521804f09"  # as version 1 stored them: no prefix


def _made_old(archive: Archive, link_id: int, **more: object) -> None:
    """Make the link look as an earlier version left it: sketches of another version."""
    with archive.db.session() as session:
        link = session.get(Link, link_id)
        assert link is not None
        link.first_fingerprint, link.last_fingerprint, link.drift = OLD, OLD, 0.42
        for name, value in more.items():
            setattr(link, name, value)


def _files_lost(archive: Archive) -> None:
    """Every WARC file gone from the folder (the index still names them)."""
    archive.store.close()
    for warc in Path(archive.settings.warc_dir).glob("*.warc.gz"):
        warc.unlink()


def test_a_capture_makes_an_old_first_fingerprint_again_from_the_first_record(
        archive: Archive, site: Site) -> None:
    site.page("/article", FIRST)
    link_id = add_link(archive, site.url("/article"))
    assert capture_link(archive, link_id) == "archived"
    first = body_sketch(FIRST.encode(), HTML, "", 10**6)
    assert link_of(archive, link_id).first_fingerprint == first
    _made_old(archive, link_id)
    site.page("/article", REWRITTEN)
    assert capture_link(archive, link_id) == "archived"
    link = link_of(archive, link_id)
    later = body_sketch(REWRITTEN.encode(), HTML, "", 10**6)
    assert link.first_fingerprint == first  # the page as it first was, sketched anew
    assert link.last_fingerprint == later
    expected = similarity(first, later)
    assert expected is not None and 0 < expected < 1
    assert link.drift == round(1 - expected, 3)


def test_the_first_page_is_found_through_redirects_and_revisits(archive: Archive,
                                                                site: Site) -> None:
    site.redirect("/old", "/moved", 301)
    site.page("/moved", FIRST)
    link_id = add_link(archive, site.url("/old"))
    assert capture_link(archive, link_id) == "archived"
    assert capture_link(archive, link_id) == "archived"  # the same bytes: revisits
    with archive.db.session() as session:
        kinds = session.scalars(select(Capture.record_type).where(
            Capture.url == site.url("/moved"))).all()
        assert sorted(kinds) == ["response", "revisit"]
        # The response made later: the capture of /moved nearest the first is the revisit.
        first_response = session.scalars(select(Capture).where(
            Capture.url == site.url("/moved"), Capture.record_type == "response")).one()
        first_response.captured_at = utcnow()
    _made_old(archive, link_id)
    assert capture_link(archive, link_id) == "archived"
    link = link_of(archive, link_id)
    assert link.first_fingerprint == body_sketch(FIRST.encode(), HTML, "", 10**6)
    assert link.drift == 0.0


def test_an_unreadable_first_record_keeps_the_old_fingerprint_and_drift(
        archive: Archive, site: Site) -> None:
    site.page("/article", FIRST)
    link_id = add_link(archive, site.url("/article"))
    assert capture_link(archive, link_id) == "archived"
    _files_lost(archive)
    _made_old(archive, link_id)
    assert capture_link(archive, link_id) == "archived"
    link = link_of(archive, link_id)
    assert (link.first_fingerprint, link.drift) == (OLD, 0.42)
    assert is_current(link.last_fingerprint)


def test_a_check_leaves_an_old_fingerprints_drift_alone(archive: Archive,
                                                        site: Site) -> None:
    site.page("/article", REWRITTEN)
    link_id = add_link(archive, site.url("/article"))
    _made_old(archive, link_id, next_check_at=utcnow(), next_capture_at=None)
    run_due(archive, WorkKind.CHECK)
    link = link_of(archive, link_id)
    assert link.last_checked_at is not None
    assert (link.first_fingerprint, link.drift) == (OLD, 0.42)
    assert link.next_capture_at is None  # a sketch of another version is no sign of change


def test_probe_answers_sketched_another_way_are_asked_again(archive: Archive) -> None:
    now = utcnow()
    with archive.db.session() as session:
        for key, sketch in (("a.example/", OLD), ("b.example/", "2:abc"), ("c.example/", None)):
            session.add(SiteProbe(key=key, probed_at=now, url=f"https://{key}zz", status=200,
                                  final_url=None, sketch=sketch))
    assert sorted(key for key, _age, _probe in stored_probes(archive.db, 3600)) == [
        "b.example/", "c.example/"]


def test_a_damaged_first_record_does_not_break_the_capture(archive: Archive,
                                                          site: Site) -> None:
    """A first record that no longer parses (bit rot, a bad repair) is as unreadable as a
    missing one: the capture is stored and the old fingerprint and drift kept."""
    site.page("/article", FIRST)
    link_id = add_link(archive, site.url("/article"))
    assert capture_link(archive, link_id) == "archived"
    with archive.db.session() as session:
        first = session.scalars(select(Capture).where(Capture.url == site.url("/article"))).one()
        warc_file, offset, length = first.warc_file, first.offset, first.length
    archive.store.close()
    path = Path(archive.settings.warc_dir) / warc_file
    with path.open("r+b") as handle:  # bytes inside the record damaged, its length kept
        handle.seek(offset + length // 2)
        handle.write(b"\xff" * 16)
    _made_old(archive, link_id)
    site.page("/article", REWRITTEN)
    assert capture_link(archive, link_id) == "archived"
    link = link_of(archive, link_id)
    assert (link.first_fingerprint, link.drift) == (OLD, 0.42)
    assert link.last_fingerprint == body_sketch(REWRITTEN.encode(), HTML, "", 10**6)


def test_a_lost_first_redirect_does_not_make_todays_page_the_first(archive: Archive,
                                                                   site: Site) -> None:
    """The first capture was a redirect whose record is lost: the first page cannot be known,
    so the old fingerprint and drift are kept, as for a lost page record.  Today's page is
    not taken as the first one (drift 0.0 for a page that was rewritten)."""
    site.redirect("/old", "/moved", 301)
    site.page("/moved", FIRST)
    link_id = add_link(archive, site.url("/old"))
    assert capture_link(archive, link_id) == "archived"
    _files_lost(archive)
    _made_old(archive, link_id)
    site.page("/moved", REWRITTEN)
    assert capture_link(archive, link_id) == "archived"
    link = link_of(archive, link_id)
    assert link.first_fingerprint != body_sketch(REWRITTEN.encode(), HTML, "", 10**6)
    assert (link.first_fingerprint, link.drift) == (OLD, 0.42)


def test_the_capture_just_made_is_never_taken_for_the_first_page(archive: Archive,
                                                                 site: Site) -> None:
    """Old WARC files removed and the index rebuilt from those left (``reindex``): the link's
    first page is no longer in the archive, and the page captured today is not it either."""
    site.page("/article", FIRST)
    link_id = add_link(archive, site.url("/article"))
    assert capture_link(archive, link_id) == "archived"
    _files_lost(archive)
    assert reindex(archive) == 0
    _made_old(archive, link_id)
    site.page("/article", REWRITTEN)
    assert capture_link(archive, link_id) == "archived"
    link = link_of(archive, link_id)
    assert (link.first_fingerprint, link.drift) == (OLD, 0.42)


def test_a_first_fingerprint_that_cannot_be_made_again_costs_no_reading_of_all_captures(
        archive: Archive, site: Site) -> None:
    """A link whose first page is not among its first ten captures (it answered 404 for
    weeks) keeps its old fingerprint; each later capture must not load every index row of
    its URL again to find that out (thousands for a link recaptured daily for years)."""
    site.page("/back", "<p>Gone for now, come back later</p>", status=404)
    link_id = add_link(archive, site.url("/back"))
    for _ in range(30):
        assert capture_link(archive, link_id) == "archived (HTTP 404)"
    site.page("/back", FIRST)
    assert capture_link(archive, link_id) == "archived"
    _made_old(archive, link_id)
    site.page("/back", REWRITTEN)
    loaded: list[int] = []

    def count(target: Capture, _context: object) -> None:
        loaded.append(target.id)

    event.listen(Capture, "load", count)
    try:
        for _ in range(2):
            assert capture_link(archive, link_id) == "archived"
    finally:
        event.remove(Capture, "load", count)
    assert len(loaded) <= 2 * FIRST_CAPTURES, f"{len(loaded)} index rows loaded"
