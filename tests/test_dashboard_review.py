"""The dashboard, the posts pages and the author's URLs after an outside review: figures that
follow removed citations, a chart by date that agrees with the cards and can be read without
colour, one rule for "broken", and numbers too large for the database refused cleanly."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import update

from archiver.actions import ignore_domain
from archiver.archive import Archive
from archiver.cli import cli
from archiver.clock import utcnow
from archiver.history import snapshot_state_counts
from archiver.models import Link, LinkState
from tests.conftest import discover_posts, post
from tests.test_author import author_app, browser, log_in, token  # noqa: F401 (fixtures)
from tests.test_notify import add_link, uncited_dead_link

HUGE = "99999999999999999999"  # more than a 64-bit integer


def worst_posts(client: FlaskClient) -> list[str]:
    """The titles in the dashboard's "most broken references" table."""
    html = client.get("/").get_data(as_text=True)
    table = html.split("Posts with the most broken references", 1)[1]
    return re.findall(r'<a href="/posts/\d+">([^<]+)</a>', table)


def kill(archive: Archive, url: str) -> None:
    """Mark the link to ``url`` dead, as checks over days would."""
    with archive.db.session() as session:
        session.execute(update(Link).where(Link.url == url).values(state=LinkState.DEAD))


def test_worst_posts_forget_citations_a_changed_post_dropped(archive: Archive,
                                                             client: FlaskClient,
                                                             tmp_path: Path) -> None:
    folder = tmp_path / "posts"
    dead, alive = "https://gone.example/a", "https://fine.example/b"
    discover_posts(archive, folder, post("Lost", "https://blog.example/1", f"[x]({dead})"),
                   post("Kept", "https://blog.example/2", f"[y]({alive})"))
    kill(archive, dead)
    assert worst_posts(client) == ["Lost"]
    # The post drops its only citation: a row goes, none is added, no highest ID moves.
    discover_posts(archive, folder, post("Lost", "https://blog.example/1", "No links now."),
                   post("Kept", "https://blog.example/2", f"[y]({alive})"))
    assert worst_posts(client) == []


def test_worst_posts_follow_a_swapped_citation(archive: Archive, client: FlaskClient,
                                               tmp_path: Path) -> None:
    folder = tmp_path / "posts"
    a, b, c = (f"https://site.example/{name}" for name in "abc")
    discover_posts(archive, folder, post("Other", "https://blog.example/1", f"[b]({b})"),
                   post("Swapper", "https://blog.example/2", f"[a]({a}) [c]({c})"))
    kill(archive, c)
    assert worst_posts(client) == ["Swapper"]
    # The newest citations are replaced by as many (SQLite reuses their IDs), to a known link.
    discover_posts(archive, folder, post("Other", "https://blog.example/1", f"[b]({b})"),
                   post("Swapper", "https://blog.example/2", f"[a]({a}) [b]({b})"))
    assert worst_posts(client) == []


def bar_title(html: str, day: str) -> str:
    """The chart's tooltip for ``day``."""
    found = re.search(rf"<title>{day}: ([^<]*)</title>", html)
    assert found, f"no bar for {day}"
    return found.group(1)


def test_the_dashboard_counts_only_cited_links_as_the_report_does(archive: Archive,
                                                                  client: FlaskClient,
                                                                  tmp_path: Path) -> None:
    """A dead link the author removed from their only post is left out of ``archiver
    report`` and its CI gate; the dashboard's cards and totals leave it out too, and the
    list of dead links, which still shows it, says no post cites it."""
    dead = uncited_dead_link(archive, tmp_path / "posts")
    html = client.get("/").get_data(as_text=True)
    assert "1 posts cite 0 links" in html
    assert re.search(r'state-dead">\s*<a[^>]*>\s*<span class="count">0<', html)
    listing = client.get("/links?state=dead").get_data(as_text=True)
    row = listing.split(dead, 1)[1].split("</tr>", 1)[0]
    assert "no post cites it now" in row


def test_todays_bar_shows_the_counts_of_the_cards(archive: Archive,
                                                  client: FlaskClient) -> None:
    add_link(archive, "http://a.example/1")
    add_link(archive, "http://b.example/1")
    with archive.db.session() as session:
        snapshot_state_counts(session)  # a round: 2 dead
    ignore_domain(archive, "b.example")  # an action after the round: 1 dead
    html = client.get("/").get_data(as_text=True)
    assert re.search(r'state-dead">\s*<a[^>]*>\s*<span class="count">1<', html)
    assert bar_title(html, utcnow().date().isoformat()) == "1 dead"


def test_the_chart_has_a_slot_for_every_day(archive: Archive, client: FlaskClient) -> None:
    add_link(archive, "http://a.example/1")
    today = utcnow().date()
    with archive.db.session() as session:
        snapshot_state_counts(session, today - timedelta(days=3))
        snapshot_state_counts(session)
    html = client.get("/").get_data(as_text=True)
    for gap in (1, 2):
        assert bar_title(html, (today - timedelta(days=gap)).isoformat()) == "no snapshot"
    assert re.findall(r'<rect class="fill-dead" x="(\d+)"', html) == ["0", "30"]


def test_the_chart_has_a_legend_and_a_table(archive: Archive, client: FlaskClient) -> None:
    add_link(archive, "http://a.example/1")
    today = utcnow().date()
    with archive.db.session() as session:
        snapshot_state_counts(session, today - timedelta(days=1))
    html = client.get("/").get_data(as_text=True)
    legend = html.split('<ul class="legend"', 1)[1].split("</ul>", 1)[0]
    assert [state.value for state in LinkState] == re.findall(r"</span>(\w+)</li>", legend)
    table = html.split('<details class="chart-data">', 1)[1].split("</details>", 1)[0]
    rows = re.findall(r'<th scope="row"[^>]*>([\d-]+)</th>((?:\s*<td[^>]*>[^<]*</td>)+)',
                      table)
    assert [day for day, _ in rows] == [today.isoformat(),
                                        (today - timedelta(days=1)).isoformat()]
    dead = [state.value for state in LinkState].index("dead")
    assert re.findall(r">(\d+)</td>", rows[0][1])[dead] == "1"


def test_posts_do_not_count_ignored_links_as_broken(archive: Archive,
                                                    client: FlaskClient) -> None:
    add_link(archive, "http://a.example/1")
    add_link(archive, "http://b.example/1")
    ignore_domain(archive, "b.example")
    listing = client.get("/posts").get_data(as_text=True)
    assert re.findall(r'<td class="num[^"]*">(\d+)</td>', listing) == ["2", "1"]
    page = client.get("/posts/1").get_data(as_text=True)
    rows = page.split("<tbody>", 1)[1].split("</tr>")
    assert "ignored" not in rows[0] and "ignored" in rows[1]


def test_numbers_too_large_for_the_database_are_refused(archive: Archive,
                                                        browser: FlaskClient) -> None:  # noqa: F811
    add_link(archive, "http://a.example/1")
    for path in (f"/links/{HUGE}", f"/posts/{HUGE}", f"/posts/{HUGE}/references"):
        assert browser.get(path).status_code == 404, path
    for path in (f"/links?after={HUGE}", f"/links?before={HUGE}", f"/posts?page={HUGE}",
                 f"/api/links?page={HUGE}", f"/api/links?post={HUGE}", "/links?after=-5",
                 "/links?before=-1", "/posts?page=0", "/links?after=x"):
        assert browser.get(path).status_code == 400, path
    assert browser.get("/posts?page=999999999999").status_code == 200  # an empty page
    log_in(browser)
    csrf = token(browser, "/links/1")
    for action in ("recheck", "not-broken", "clear-override"):
        assert browser.post(f"/links/{HUGE}/{action}", data={"csrf_token": csrf}) \
            .status_code == 404, action
        assert browser.post(f"/links/7/{action}", data={"csrf_token": csrf}) \
            .status_code == 404, action


def test_a_post_to_a_page_is_method_not_allowed(archive: Archive, client: FlaskClient) -> None:
    add_link(archive, "http://a.example/1")
    assert client.post("/links/1").status_code == 405
    assert client.post("/no/such/page").status_code == 404


def test_report_refuses_an_unknown_post(archive: Archive) -> None:
    add_link(archive, "http://a.example/1")
    env = {"ARCHIVER_DATA_DIR": str(archive.settings.data_dir)}
    assert CliRunner().invoke(cli, ["report", "--post", "1"], env=env).exit_code == 1  # dead
    for post_id in (HUGE, "0", "2"):
        result = CliRunner().invoke(cli, ["report", "--post", post_id], env=env)
        assert (result.exit_code, result.stdout) == (2, ""), post_id
        assert result.stderr == f"error: --post {post_id}: no such post\n"
