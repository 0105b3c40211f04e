"""Migrations build exactly the schema the models describe, and run down and up again."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from archiver.db import Database
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


def test_migrations_match_models_and_reverse(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True)
    database = Database(settings)
    assert_migrations_round_trip(database)
    database.dispose()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True)
    database = Database(settings)
    with database.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    database.dispose()
