"""The dashboard's figures: counted for the page while counting is cheap; on a large archive
stored figures are shown (with their time) until the scheduler counts again."""

from __future__ import annotations

from datetime import timedelta

from flask.testing import FlaskClient
from sqlalchemy import update

from archiver import figures
from archiver.actions import ignore_domain
from archiver.archive import Archive
from archiver.history import snapshot_state_counts
from archiver.models import DashboardFigures
from tests.test_notify import add_link

AGE_NOTICE = 'id="figures-age"'


def dead_count(client: FlaskClient) -> tuple[int, bool]:
    """The dead card's number on the dashboard, and whether the page says its figures are old."""
    page = client.get("/").get_data(as_text=True)
    card = page.split('class="card state-dead"', 1)[1]
    number = int(card.split('<span class="count">', 1)[1].split("<", 1)[0])
    return number, AGE_NOTICE in page


def pretend_counting_is_slow(archive: Archive, seconds: float = 10.0) -> None:
    """Make the stored figures look as if counting took ``seconds`` (as on a million links)."""
    with archive.db.session() as session:
        session.execute(update(DashboardFigures).values(cost_ms=seconds * 1000))


def test_the_change_mark_moves_with_every_counted_table(archive: Archive) -> None:
    with archive.db.session() as session:
        before = figures.change_mark(session)
    add_link(archive, "http://a.example/1")  # a link, a post and a citation
    with archive.db.session() as session:
        after = figures.change_mark(session)
    # IDs of posts, citations, links, checks, captures; the latest post change
    assert [b < a for b, a in zip(before, after, strict=True)] == [True, True, True, False,
                                                                   False, True]


def test_cheap_figures_are_counted_for_every_change(archive: Archive,
                                                    client: FlaskClient) -> None:
    add_link(archive, "http://a.example/1")
    assert dead_count(client) == (1, False)
    add_link(archive, "http://a.example/2")
    assert dead_count(client) == (2, False)
    with archive.db.session() as session:
        assert session.get(DashboardFigures, 1) is not None  # stored as they were counted


def test_expensive_figures_wait_for_the_scheduler_and_say_how_old_they_are(
        archive: Archive, client: FlaskClient) -> None:
    add_link(archive, "http://a.example/1")
    assert dead_count(client) == (1, False)
    pretend_counting_is_slow(archive)
    assert dead_count(client) == (1, False)  # nothing changed: current, no notice
    add_link(archive, "http://a.example/2")
    assert dead_count(client) == (1, True)  # changed, but recounting is dear: shown as old
    with archive.db.session() as session:
        snapshot_state_counts(session)  # what the scheduler does after each round
    assert dead_count(client) == (2, False)

    pretend_counting_is_slow(archive, seconds=0.1)  # old enough: 100 x 0.1 s = 10 s
    with archive.db.session() as session:
        row = session.get(DashboardFigures, 1)
        assert row is not None
        row.counted_at -= timedelta(seconds=11)
    add_link(archive, "http://a.example/3")
    assert dead_count(client) == (3, False)  # too old to show: counted for the page


def test_an_action_drops_the_stored_figures(archive: Archive, client: FlaskClient) -> None:
    add_link(archive, "http://a.example/1")
    add_link(archive, "http://b.example/1")
    assert dead_count(client) == (2, False)
    pretend_counting_is_slow(archive)
    ignore_domain(archive, "b.example")  # no new row, but one dead link fewer to show
    assert dead_count(client) == (1, False)
