"""A throwaway PostgreSQL server for the tests: Debian's binaries, a cluster in a temporary
folder, loopback only, deleted at the end. Nothing is installed or left running.

Import the fixtures into a test module (``from tests.pg import pg_url  # noqa: F401``).
When PostgreSQL is missing the tests fail (they never skip): ``.ci/install-system-tools``
installs it.
"""

from __future__ import annotations

import itertools
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_ROOT = Path("/usr/lib/postgresql")
USER = "archiver"  # the cluster's superuser (trust authentication, loopback only)
SYSTEM_USER = "postgres"  # PostgreSQL refuses to run as root: this account runs it then
INSTALL_HINT = ("run `.ci/install-system-tools` (as root, or with sudo) to install Debian's "
                "`postgresql` package")
SERVER_OPTIONS = ("-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
                  "-c full_page_writes=off -c max_connections=60")
START_TIMEOUT_S = 60


def find_bin_dir() -> Path:
    """Debian's newest ``/usr/lib/postgresql/<version>/bin``, else the folder of an
    ``initdb`` on the PATH (other systems put it there)."""
    found = [path.parent for path in PG_ROOT.glob("*/bin/initdb")
             if (path.parent / "pg_ctl").exists()]
    if found:
        def version(path: Path) -> tuple[int, ...]:
            return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))

        return max(found, key=version)
    on_path = shutil.which("initdb")
    if on_path is not None and (Path(on_path).resolve().parent / "pg_ctl").exists():
        return Path(on_path).resolve().parent
    pytest.fail(f"PostgreSQL is not installed (no {PG_ROOT}/*/bin/initdb, no initdb on the "
                f"PATH): {INSTALL_HINT}")


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder, listening on a loopback port."""

    def __init__(self) -> None:
        self.bin_dir = find_bin_dir()
        self.prefix: list[str] = []
        self.owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self.owner = pwd.getpwnam(SYSTEM_USER)
            except KeyError:
                pytest.fail(f"running as root, and there is no `{SYSTEM_USER}` account to run "
                            f"PostgreSQL as (Debian's package creates it): {INSTALL_HINT}")
            runuser = shutil.which("runuser")
            if runuser is None:
                pytest.fail("running as root, and `runuser` (util-linux) is missing: it is "
                            "needed to run PostgreSQL as the postgres account")
            self.prefix = [runuser, "-u", SYSTEM_USER, "--"]
        # As root the folder must be one the postgres account can reach: under /tmp, not
        # under a TMPDIR that may be private to root.
        self.folder = Path(tempfile.mkdtemp(prefix="archiver-pg-",
                                            dir="/tmp" if self.owner else None))
        if self.owner is not None:
            os.chown(self.folder, self.owner.pw_uid, self.owner.pw_gid)
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.port = 0
        self._names = itertools.count(1)

    def _run(self, *args: str) -> None:
        command = [*self.prefix, *args]
        result = subprocess.run(command, capture_output=True, text=True, check=False,
                                timeout=START_TIMEOUT_S, cwd=self.folder)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed ({result.returncode}):\n"
                               f"{result.stdout}{result.stderr}{log}")

    def start(self) -> None:
        """initdb the cluster and start the server (a few tries if a port was taken)."""
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", USER,
                  "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync")
        for attempt in range(3):
            self.port = free_port()
            options = f"{SERVER_OPTIONS} -p {self.port} -k {self.folder}"
            try:
                self._run(str(self.bin_dir / "pg_ctl"), "start", "-D", str(self.data),
                          "-l", str(self.log), "-w", "-t", str(START_TIMEOUT_S), "-o", options)
                return
            except RuntimeError:
                if attempt == 2:
                    raise

    def stop(self) -> None:
        """Stop the server at once (its data is thrown away) and delete the folder."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data),
                          "-m", "immediate", "-w")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str) -> str:
        """SQLAlchemy URL of ``database`` on this server (psycopg 3 driver)."""
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        """Run one statement outside a transaction in the ``postgres`` database."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, dbname="postgres",
                             autocommit=True) as connection:
            connection.execute(sql.encode())  # bytes: a query built at run time

    def create_database(self, prefix: str = "test", template: str | None = None) -> str:
        """Create a new database (empty, or a copy of ``template``); return its name."""
        name = f"{prefix}_{next(self._names)}"
        copy = f' TEMPLATE "{template}"' if template else ""
        self.admin(f'CREATE DATABASE "{name}"{copy}')
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name``, ending any connection still open to it."""
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _require_psycopg() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail("psycopg is not installed: `pip install -e '.[dev]'` (or '.[postgres]')")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole test session."""
    _require_psycopg()
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_url(pg_server: PostgresServer) -> str:
    """URL of a database created once per session (shared: tests must not rely on it empty)."""
    return pg_server.url(pg_server.create_database("session"))


@pytest.fixture
def fresh_pg_url(pg_server: PostgresServer) -> Iterator[str]:
    """URL of a new empty database for one test, dropped afterwards."""
    name = pg_server.create_database()
    try:
        yield pg_server.url(name)
    finally:
        pg_server.drop_database(name)
