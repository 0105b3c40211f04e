"""The author's login and its rate limit against PostgreSQL: the attempt reserved and
committed before the count holds under read committed too, and logins are shared by web
processes (see tests/test_postgres.py for the database fixtures)."""

from __future__ import annotations

from archiver.archive import Archive
from tests.pg import pg_server  # noqa: F401
from tests.test_author import (  # noqa: F401
    author_app,
    browser,
    test_a_copied_session_cookie_dies_at_logout,
    test_parallel_wrong_passwords_get_no_more_checks_than_allowed,
    test_right_passwords_use_no_attempts_and_old_failures_age_out,
    test_the_session_lifetime_is_stored_with_the_login,
    test_two_web_processes_share_the_limit_and_the_logins,
)
from tests.test_postgres import migrated_template, settings  # noqa: F401


def test_these_run_on_postgres(archive: Archive) -> None:
    assert archive.db.engine.dialect.name == "postgresql"
