"""The one way to open the database: `Database(url)` gives the engine, sessions and the schema upgrade."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Insert
from sqlmodel import Session

from maild.permissions import private_dir, private_file, sqlite_path

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
HEAD_REVISION = "0007_dunning"  # the newest file in migrations/versions (a test keeps the two in step)


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = sqlite_path(url)
            if path is not None:  # owner-only: it holds all the mail (SQLite gives -wal and -shm the same mode)
                private_dir(path.parent)
                private_file(path)
            self.engine: Engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error.

        write=True, for one long all-or-nothing write with savepoints inside (an import): on SQLite the
        transaction starts at once with the write lock (BEGIN IMMEDIATE). Otherwise pysqlite begins it only at
        the first INSERT/UPDATE/DELETE, and a savepoint opened before that commits when it is released.
        """
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            if write and self.is_sqlite:
                session.connection().exec_driver_sql("BEGIN IMMEDIATE")
            yield session

    def insert_ignore(self, table: Any) -> Insert:
        """INSERT ... ON CONFLICT DO NOTHING, in this database's dialect."""
        insert = sqlite_insert if self.is_sqlite else pg_insert
        return insert(table).on_conflict_do_nothing()

    def upgrade(self) -> None:
        """Bring the schema to the newest migration (run on `init` and on every start)."""
        if self.revision() == HEAD_REVISION:
            return
        from alembic import command
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.begin() as connection:
            if not self.is_sqlite:
                # Two daemons starting at once must not both run the migration.
                connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7263541)")
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")

    def revision(self) -> str | None:
        """The schema's current migration, or None for an empty database."""
        try:
            with self.engine.connect() as connection:
                return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        except DBAPIError:
            return None

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()
