"""Old checks that only repeat their neighbours are thinned; what they said is kept."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from archiver.actions import restate_from_checks
from archiver.archive import Archive
from archiver.cli import cli
from archiver.clock import utcnow
from archiver.history import thin_checks
from archiver.models import Check, Link
from archiver.scheduler import build_scheduler, history_tick
from archiver.settings import Settings
from archiver.urls import host_of, url_key

DAY = 86400.0


def _link_with_checks(archive: Archive, url: str,
                      checks: list[tuple[int, str, int | None, str | None]]) -> int:
    """A link and its checks, each (days ago, verdict, status, final URL)."""
    now = utcnow()
    with archive.db.session() as session:
        link = Link(url=url, url_key=url_key(url), host=host_of(url), created_at=now)
        session.add(link)
        session.flush()
        for days_ago, verdict, status, final_url in checks:
            session.add(Check(link_id=link.id, checked_at=now - timedelta(days=days_ago),
                              verdict=verdict, http_status=status, final_url=final_url,
                              evidence={}))
        return link.id


def _history(archive: Archive, link_id: int) -> list[tuple[int, str, int | None, str | None]]:
    now = utcnow()
    with archive.db.session() as session:
        rows = session.execute(select(Check.checked_at, Check.verdict, Check.http_status,
                                      Check.final_url).where(Check.link_id == link_id)
                               .order_by(Check.checked_at)).all()
    return [(round((now - at).total_seconds() / DAY), verdict, status, final)
            for at, verdict, status, final in rows]


WEEKLY_OK = [(days, "ok", 200, None) for days in range(400, 180, -7)]


def test_runs_of_old_identical_successes_keep_their_first_and_last(archive: Archive) -> None:
    moved = "https://new.example/a"
    history = [*WEEKLY_OK,
               (170, "not_found", 404, None), (160, "not_found", 404, None),
               (150, "not_found", 404, None),
               (140, "redirect", 301, moved), (130, "redirect", 301, moved),
               (120, "redirect", 301, moved),
               (100, "redirect", 301, "https://other.example/"),
               (90, "ok", 200, None), (80, "ok", 200, None), (70, "ok", 200, None)]
    link_id = _link_with_checks(archive, "https://old.example/a", history)
    other_id = _link_with_checks(archive, "https://fresh.example/", WEEKLY_OK[-3:])
    removed = thin_checks(archive.db, 100 * DAY)
    kept = _history(archive, link_id)
    # The weekly successes older than 100 days: their first and last only; the failures all
    # stay; the permanent redirects to one place are a run too; a new target breaks the run.
    assert kept == [WEEKLY_OK[0], WEEKLY_OK[-1],
                    (170, "not_found", 404, None), (160, "not_found", 404, None),
                    (150, "not_found", 404, None),
                    (140, "redirect", 301, moved), (120, "redirect", 301, moved),
                    (100, "redirect", 301, "https://other.example/"),
                    (90, "ok", 200, None), (80, "ok", 200, None), (70, "ok", 200, None)]
    assert removed == len(WEEKLY_OK) - 2 + 1 + len(WEEKLY_OK[-3:]) - 2
    assert len(_history(archive, other_id)) == 2
    assert thin_checks(archive.db, 100 * DAY) == 0  # nothing more to thin
    assert thin_checks(archive.db, 0) == 0


def test_thinning_leaves_a_links_restated_state_unchanged(archive: Archive,
                                                         settings: Settings) -> None:
    failing = [*WEEKLY_OK, *((days, "not_found", 404, None) for days in (170, 160, 150, 140))]
    link_id = _link_with_checks(archive, "https://dying.example/x", failing)

    def restated() -> tuple[str, int, datetime | None, datetime | None]:
        with archive.db.session() as session:
            link = session.get(Link, link_id)
            assert link is not None
            restate_from_checks(session, link, settings)
            return (link.state, link.consecutive_failures, link.first_failure_at,
                    link.last_alive_at)

    before = restated()
    assert before[0] == "dead"
    assert thin_checks(archive.db, 30 * DAY) > 0
    assert restated() == before


def test_the_command_and_the_scheduler_thin_daily(archive: Archive,
                                                  tmp_path: Path) -> None:
    link_id = _link_with_checks(archive, "https://weekly.example/", WEEKLY_OK)
    history_tick(archive)  # what the scheduler runs each day
    assert len(_history(archive, link_id)) == 2
    jobs = {job.id: job for job in build_scheduler(archive, blocking=False).get_jobs()}
    assert jobs["history"].trigger.interval == timedelta(days=1)
    _link_with_checks(archive, "https://weekly2.example/", WEEKLY_OK)
    config = tmp_path / "archiver.toml"
    config.write_text(f'data_dir = "{archive.settings.data_dir}"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(config), "thin-checks"])
    assert result.exit_code == 0, result.output
    assert f"{len(WEEKLY_OK) - 2} checks older than 180d dropped" in result.output
