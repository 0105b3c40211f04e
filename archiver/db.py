"""Engine, sessions and migrations. SQLite by default (WAL, busy timeout), any SQLAlchemy URL
otherwise; the schema is always built by the Alembic migrations in ``archiver/migrations``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from archiver.errors import NotInitialisedError
from archiver.settings import Settings

if TYPE_CHECKING:  # Alembic is imported only when migrations are looked at (it is slow to load)
    from alembic.config import Config

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(database_url: str) -> Engine:
    """Create an engine; SQLite connections get WAL mode, a busy timeout and foreign keys."""
    if database_url.startswith("sqlite"):
        connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        engine = create_engine(database_url, connect_args=connect_args)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(database_url, pool_pre_ping=True)


class Database:
    """Owns the engine and hands out sessions; one per process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.database_url
        self.engine = make_engine(self.url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on error."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def new_session(self) -> Session:
        """A plain session the caller closes (for short lookups from worker threads)."""
        return self._sessions()

    def alembic_config(self) -> Config:
        """Alembic configuration pointing at this database."""
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        config.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        config.attributes["engine"] = self.engine
        return config

    def migrate(self) -> None:
        """Bring the schema to the newest migration."""
        from alembic import command

        command.upgrade(self.alembic_config(), "head")

    def is_current(self) -> bool:
        """True when the schema exists and is at the newest migration."""
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(self.alembic_config()).get_current_head()
        with self.engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
        return current == head

    def require_current(self) -> None:
        """Raise a clear error when ``archiver init`` has not been run (or needs re-running)."""
        if self.url.startswith("sqlite:///"):
            path = Path(self.url.removeprefix("sqlite:///"))
            if not path.exists():
                raise NotInitialisedError(
                    f"no database at {path}: run `archiver init` first")
        if not self.is_current():
            raise NotInitialisedError(
                "the database schema is missing or old: run `archiver init` to migrate it")

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
