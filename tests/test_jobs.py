"""Claims, leases and runs against a real SQLite file and a loopback web."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select
from werkzeug.wrappers import Request, Response

from archiver.archive import Archive, initialise
from archiver.check import CheckOutcome
from archiver.clock import utcnow
from archiver.demo.fixtureweb import Site
from archiver.jobs import (
    DueLink,
    WorkKind,
    capture_link,
    check_link,
    claim_due,
    interleave_by_host,
    run_due,
    store_checks,
)
from archiver.models import Capture, Check, Link, LinkState
from archiver.urls import host_of, url_key
from archiver.verdicts import Verdict
from tests.conftest import make_settings


def add_links(archive: Archive, urls: list[str]) -> list[int]:
    now = utcnow()
    with archive.db.session() as session:
        links = [Link(url=u, url_key=url_key(u), host=host_of(u), next_check_at=now,
                      next_capture_at=now) for u in urls]
        session.add_all(links)
        session.flush()
        return [link.id for link in links]


def test_two_claims_never_share_a_link(archive: Archive) -> None:
    ids = add_links(archive, [f"http://example.com/{n}" for n in range(10)])
    first = claim_due(archive, WorkKind.CHECK, 6)
    second = claim_due(archive, WorkKind.CHECK, 6)
    assert len(first) == 6 and len(second) == 4
    assert set(first) | set(second) == set(ids)
    assert not set(first) & set(second)
    assert claim_due(archive, WorkKind.CHECK, 6) == []
    # Capture claims are separate from check claims.
    assert len(claim_due(archive, WorkKind.CAPTURE, 20)) == 10


def test_expired_leases_are_taken_over(archive: Archive) -> None:
    add_links(archive, ["http://example.com/a"])
    assert claim_due(archive, WorkKind.CHECK, 5)
    later = utcnow() + timedelta(seconds=archive.settings["capture.lease"] + 1)
    assert claim_due(archive, WorkKind.CHECK, 5, now=later)


def test_links_not_yet_due_are_left_alone(archive: Archive) -> None:
    ids = add_links(archive, ["http://example.com/a"])
    with archive.db.session() as session:
        link = session.get(Link, ids[0])
        assert link is not None
        link.next_check_at = utcnow() + timedelta(days=1)
    assert claim_due(archive, WorkKind.CHECK, 5) == []
    assert claim_due(archive, WorkKind.CHECK, 5, everything=True) == ids


def test_jobs_tolerate_a_deleted_link(archive: Archive) -> None:
    assert check_link(archive, 12345) is None
    assert capture_link(archive, 12345) is None


def test_run_checks_and_captures(archive: Archive, site: Site) -> None:
    site.page("/ok", "<p>fine</p>")
    site.page("/gone", "no", status=410)
    ids = add_links(archive, [site.url("/ok"), site.url("/gone")])
    captures = run_due(archive, WorkKind.CAPTURE)
    checks = run_due(archive, WorkKind.CHECK)
    assert captures.outcomes == {"archived": 1, "archived (HTTP 410)": 1}
    assert checks.outcomes == {"ok": 1, "gone": 1}
    with archive.db.session() as session:
        ok, gone = (session.get(Link, i) for i in ids)
        assert ok is not None and gone is not None
        assert ok.state == LinkState.ALIVE and gone.state == LinkState.FAILING
        assert ok.next_check_at is not None and ok.next_check_at > utcnow() + timedelta(days=6)
        assert ok.check_lease_owner is None and ok.capture_lease_owner is None
        assert session.scalar(select(func.count(Check.id))) == 2
        assert session.scalar(select(func.count(Capture.id))) == 2
    # Nothing is due any more: a second run does nothing.
    assert run_due(archive, WorkKind.CAPTURE).claimed == 0


def test_spaced_rechecks_reach_dead(archive: Archive, site: Site) -> None:
    site.page("/missing", "no", status=404)
    ids = add_links(archive, [site.url("/missing")])
    for _ in range(3):  # failure spacing is 0s in tests, so each failure is due at once
        run_due(archive, WorkKind.CHECK)
    with archive.db.session() as session:
        link = session.get(Link, ids[0])
        assert link is not None
        assert (link.state, link.consecutive_failures) == (LinkState.DEAD, 3)


def test_stored_checks_write_only_what_changed(archive: Archive) -> None:
    """A batch skips a deleted link, writes each link's own changes, and leaves the columns a
    check does not touch as another writer left them."""
    ok_id, failing_id = add_links(archive, ["http://example.com/ok", "http://example.com/x"])
    with archive.db.session() as session:
        ok = session.get(Link, ok_id)
        assert ok is not None
        ok.last_capture_error = "set by a capture meanwhile"
        ok.override_response = "not this answer"
    gone = DueLink(999_999, "http://example.com/gone", None)
    stored = store_checks(archive, [
        (DueLink(ok_id, "http://example.com/ok", None),
         CheckOutcome(Verdict.OK, 200, "http://example.com/ok",
                      evidence={"headers": {"etag": '"v1"'}})),
        (DueLink(failing_id, "http://example.com/x", None),
         CheckOutcome(Verdict.SERVER_ERROR, 503, "http://example.com/x")),
        (gone, CheckOutcome(Verdict.OK, 200, gone.url)),
    ])
    assert stored == 2
    with archive.db.session() as session:
        ok, failing = session.get(Link, ok_id), session.get(Link, failing_id)
        assert ok is not None and failing is not None
        assert (ok.state, ok.last_verdict, ok.validators) == (LinkState.ALIVE, "ok",
                                                              {"etag": '"v1"'})
        assert ok.override_response is None  # the answer changed: the override lapsed
        assert ok.last_capture_error == "set by a capture meanwhile"
        assert (failing.state, failing.consecutive_failures, failing.http_status) == (
            LinkState.FAILING, 1, 503)
        assert failing.validators is None and failing.first_failure_at is not None
        rows = session.execute(select(Check.link_id, Check.verdict, Check.evidence)
                               .order_by(Check.link_id)).all()
        assert rows == [(ok_id, "ok", {"headers": {"etag": '"v1"'}}),
                        (failing_id, "server_error", {})]


@contextmanager
def stopping_at_the_second(tmp_path: Path, site: Site) -> Iterator[tuple[Archive, list[int]]]:
    """An archive with ten due links /0../9 on one host with one slot (four threads), whose
    site sets the archive's stop, as a SIGTERM would, when /2 is asked for; anything else
    (robots.txt, soft-404 probes) is a 404."""
    settings = make_settings(tmp_path / "data", fetch__per_host_concurrency=1,
                             fetch__concurrency=4)
    initialise(settings)
    pages = {f"/{n}" for n in range(10)}
    with Archive.open(settings) as archive:

        def stop_at_the_second(request: Request) -> Response:
            if request.path == "/2":
                archive.stopping.set()
            if request.path not in pages:
                return Response("no", status=404)
            return Response("<p>fine</p>", content_type="text/html")

        site.fallback = stop_at_the_second
        yield archive, add_links(archive, [site.url(f"/{n}") for n in range(10)])


def test_a_stop_during_a_check_run_leaves_the_links_not_begun(tmp_path: Path,
                                                              site: Site) -> None:
    with stopping_at_the_second(tmp_path, site) as (archive, ids):
        summary = run_due(archive, WorkKind.CHECK)
        # One host, one slot: the checks go one by one, and none starts after the stop.
        assert summary.outcomes == {"ok": 3, "stopped": 7}, summary.outcomes
        assert summary.done == 10
        with archive.db.session() as session:
            checked = set(session.scalars(select(Check.link_id)))
            leased = set(session.scalars(select(Link.id).where(
                Link.check_lease_owner.is_not(None))))
        assert checked == set(ids[:3])
        assert leased == set()  # the links not begun are given back: the next run takes them
        archive.stopping.clear()
        assert run_due(archive, WorkKind.CHECK).claimed == 7


def test_a_stop_abandons_the_captures_waiting_for_their_hosts_turn(tmp_path: Path,
                                                                   site: Site) -> None:
    """Captures begun before a stop but still queued behind their host's one slot used to run
    to the end, one by one, after it (minutes on a busy host, past a container's stop grace):
    now only the page being fetched is finished."""
    with stopping_at_the_second(tmp_path, site) as (archive, ids):
        summary = run_due(archive, WorkKind.CAPTURE)
        fetched = [int(path[1:]) for path in site.hits if path[1:].isdigit()]
        # /2 and those before it (the slot is not handed out in order); the other threads'
        # pages were waiting for the slot when the stop came, and none was fetched after it.
        assert fetched[-1] == 2, site.hits
        assert summary.outcomes == {"archived": len(fetched), "stopped": 10 - len(fetched)}
        with archive.db.session() as session:
            captured = set(session.scalars(select(Link.id).where(
                Link.last_capture_outcome.is_not(None))))
            leased = set(session.scalars(select(Link.id).where(
                Link.capture_lease_owner.is_not(None))))
        assert captured == {ids[n] for n in fetched} and leased == set()
        archive.stopping.clear()
        assert run_due(archive, WorkKind.CAPTURE).claimed == 10 - len(fetched)


def test_captures_take_hosts_in_turn() -> None:
    links = [DueLink(n, f"http://{host}.example/{n}", None)
             for n, host in enumerate(["a", "a", "a", "b", "b", "c"], 1)]
    ordered = interleave_by_host(reversed(links))
    assert [link.id for link in ordered] == [1, 4, 6, 2, 5, 3]


def test_the_domain_filter_takes_subdomains_and_ports(archive: Archive) -> None:
    """A link's host keeps its port ("example.com:8080"): the filter took none of those."""
    from archiver.report import links_query

    urls = ["http://example.com/a", "http://www.example.com:8080/b", "http://news.example.com/c",
            "http://example.com:81/d", "http://notexample.com/e", "http://example.com.evil/f"]
    ids = add_links(archive, urls)
    with archive.db.session() as session:
        found = list(session.scalars(links_query(domain="www.example.com")))
    assert [link.id for link in found] == ids[:4]
