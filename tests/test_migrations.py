"""Migrations build exactly the schema the models describe, and run down and up again."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from archiver.db import Database, head_revision
from archiver.models import Base
from archiver.settings import Settings


def assert_migrations_round_trip(database: Database) -> None:
    """Up to head matches the models; down to base and up again works."""
    database.migrate()
    with database.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    assert database.is_current()
    command.downgrade(database.alembic_config(), "base")
    assert not database.is_current()
    database.migrate()
    assert database.is_current()


def assert_0005_flags_existing_links(database: Database) -> None:
    """Links stored before 0005 come out of it flagged when an ignored domain covers them."""
    command.upgrade(database.alembic_config(), "0004")
    hosts = ["example.org", "a.example.org:8080", "example.org.evil.net", "other.net"]
    with database.engine.begin() as connection:
        connection.execute(text("INSERT INTO ignored_domains (domain, created_at) "
                                "VALUES ('example.org', '2026-01-01')"))
        for n, host in enumerate(hosts):
            connection.execute(text(
                "INSERT INTO links (url, url_key, host, created_at, state, "
                "consecutive_failures) VALUES (:url, :url, :host, '2026-01-01', 'alive', 0)"),
                {"url": f"http://{host}/{n}", "host": host})
    database.migrate()
    with database.engine.connect() as connection:
        flags = connection.execute(text("SELECT host, ignored FROM links ORDER BY id")).all()
    assert [(host, bool(flag)) for host, flag in flags] == [
        ("example.org", True), ("a.example.org:8080", True), ("example.org.evil.net", False),
        ("other.net", False)]


def test_migrations_match_models_and_reverse(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True)
    database = Database(settings)
    assert_migrations_round_trip(database)
    database.dispose()


def test_0005_flags_the_links_of_ignored_domains(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True)
    database = Database(settings)
    assert_0005_flags_existing_links(database)
    database.dispose()


def test_the_quick_head_revision_is_alembics(settings: Settings) -> None:
    from alembic.script import ScriptDirectory

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = Database(settings)
    try:
        alembic_head = ScriptDirectory.from_config(database.alembic_config()).get_current_head()
        assert head_revision() == alembic_head
        assert not database.is_current()  # no schema yet
        database.migrate()
        assert database.is_current()
        command.downgrade(database.alembic_config(), "-1")
        assert not database.is_current()
    finally:
        database.dispose()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True)
    database = Database(settings)
    with database.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    database.dispose()
