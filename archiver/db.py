"""Engine, sessions and migrations. SQLite by default (WAL, busy timeout), any SQLAlchemy URL
otherwise; the schema is always built by the Alembic migrations in ``archiver/migrations``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.orm import Session, sessionmaker

from archiver.errors import ConfigError, NotInitialisedError, StorageError
from archiver.settings import Settings

if TYPE_CHECKING:  # Alembic is imported only when migrations are looked at (it is slow to load)
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Connection pool of a server database: kept connections, extra ones under load, how long a
# thread waits for one, and the age after which one is replaced (idle firewalls drop them).
POOL_SIZE = 5
POOL_OVERFLOW = 10
POOL_TIMEOUT_S = 30
POOL_RECYCLE_S = 1800


def known_revisions() -> set[str]:
    """Every migration's revision. Migrations are ``versions/<revision>_<what>.py`` with
    revisions ``0001``, ``0002``... in order."""
    return {path.name.split("_", 1)[0]
            for path in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")}


def head_revision() -> str:
    """The newest migration's revision (a test holds this to Alembic's own answer)."""
    return max(known_revisions())


def refuse_unknown_revision(revision: str | None) -> None:
    """Raise StorageError when the schema is at a migration this code does not have (made by
    a newer version): neither commands nor ``archiver init`` can work on it."""
    if revision is None or revision in known_revisions():
        return
    head = head_revision()
    shown = revision if len(revision) <= 40 else revision[:37] + "..."
    how = "newer than" if revision.isdigit() and revision > head else "unknown to"
    raise StorageError(f"the database is at migration {shown}, {how} this archiver ({head}): "
                       "upgrade link-archiver")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def engine_url(database_url: str) -> str:
    """``database_url`` with a plain ``postgresql://`` (or ``postgres://``) sent to psycopg 3."""
    for plain in ("postgresql://", "postgres://"):
        if database_url.startswith(plain):
            return "postgresql+psycopg://" + database_url.removeprefix(plain)
    return database_url


def make_engine(database_url: str, *, threads: int = POOL_SIZE) -> Engine:
    """Create an engine; SQLite connections get WAL mode, a busy timeout and foreign keys.

    A server database (PostgreSQL through psycopg 3: ``postgresql+psycopg://``) gets a pool
    big enough for ``threads`` workers plus the thread that hands them work, and connections
    checked before use, so a restarted server costs one retry rather than an error.
    """
    if database_url.startswith("sqlite"):
        connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        engine = create_engine(database_url, connect_args=connect_args)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        return create_engine(engine_url(database_url), pool_pre_ping=True,
                             pool_size=max(POOL_SIZE, threads + 2), max_overflow=POOL_OVERFLOW,
                             pool_timeout=POOL_TIMEOUT_S, pool_recycle=POOL_RECYCLE_S)
    except ModuleNotFoundError as exc:  # the URL's driver is an optional dependency
        raise ConfigError(f"database_url needs the Python package {exc.name!r}, which is not "
                          "installed (for PostgreSQL: pip install 'link-archiver[postgres]')"
                          ) from exc


class Database:
    """Owns the engine and hands out sessions; one per process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = engine_url(settings.database_url)
        self.engine = make_engine(self.url, threads=settings["fetch.concurrency"])
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
        config.set_main_option("script_location", str(MIGRATIONS))
        config.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        config.attributes["engine"] = self.engine
        return config

    def migrate(self) -> None:
        """Bring the schema to the newest migration; refuse one made by a newer version."""
        from alembic import command
        from alembic.script.revision import RevisionError
        from alembic.util import CommandError

        refuse_unknown_revision(self.revision())
        try:
            command.upgrade(self.alembic_config(), "head")
        except (CommandError, RevisionError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StorageError(f"database migration failed: {reason}") from exc

    def revision(self) -> str | None:
        """The schema's migration, or None when there is no schema (read without loading
        Alembic, which every command would otherwise pay for at start-up)."""
        with self.engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            current = connection.execute(text("SELECT version_num FROM alembic_version"))
            return " ".join(current.scalars()) or None

    def is_current(self) -> bool:
        """True when the schema exists and is at the newest migration."""
        return self.revision() == head_revision()

    def require_current(self) -> None:
        """Raise a clear error when ``archiver init`` has not been run (or needs re-running),
        or when a newer version has migrated the database."""
        if self.url.startswith("sqlite:///"):
            path = Path(self.url.removeprefix("sqlite:///"))
            if not path.exists():
                raise NotInitialisedError(
                    f"no database at {path}: run `archiver init` first")
        revision = self.revision()
        refuse_unknown_revision(revision)
        if revision != head_revision():
            raise NotInitialisedError(
                "the database schema is missing or old: run `archiver init` to migrate it")

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
