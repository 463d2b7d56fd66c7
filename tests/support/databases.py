"""Migrated test databases without paying for a migration, a CREATE and a DROP DATABASE per test.

A test that asks for `db` gets a database in exactly the state `Database(url).upgrade()` leaves a new one in:
- SQLite: a copy of a file migrated once per test process.
- PostgreSQL: a database of this process's pool, reset to the freshly migrated state after each test and renamed
  before the next one has it (so a connection left over from the last test can never reach it). CREATE DATABASE
  costs about a second, the migration one to three, and DROP DATABASE forces a checkpoint of the whole server,
  which stalls every other test writing meanwhile. A database whose schema a test changed is dropped, not reused.

Test databases commit without waiting for the WAL flush (`synchronous_commit = off`, a setting of the database):
a commit is as visible to every other connection as before and survives any client, killed or not; only a crash
of the PostgreSQL server could lose the last ones, and no test crashes it. On a loaded machine it saves most of
the time of a transaction.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from maild.store.db import Database

# What a test could change besides rows; compared with the freshly migrated database before reuse.
SCHEMA_FINGERPRINT = """
SELECT 'column', table_name::text, column_name::text,
       concat_ws(' ', data_type, is_nullable, column_default, character_maximum_length)
  FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL SELECT 'index', tablename::text, indexname::text, indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL SELECT 'constraint', conrelid::regclass::text, conname::text, pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL SELECT 'relation', relkind::text, relname::text, '' FROM pg_class
  WHERE relnamespace = 'public'::regnamespace AND relkind NOT IN ('r', 'i', 'p')
UNION ALL SELECT 'trigger', tgrelid::regclass::text, tgname::text, '' FROM pg_trigger WHERE NOT tgisinternal
UNION ALL SELECT 'function', proname::text, '', '' FROM pg_proc WHERE pronamespace = 'public'::regnamespace
UNION ALL SELECT 'type', typname::text, typtype::text, '' FROM pg_type
  WHERE typnamespace = 'public'::regnamespace AND typtype IN ('e', 'c', 'd', 'r')
UNION ALL SELECT 'schema', nspname::text, '', '' FROM pg_namespace
  WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'
ORDER BY 1, 2, 3, 4
"""
TABLES = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
SEQUENCES = "SELECT sequencename, last_value IS NOT NULL FROM pg_sequences WHERE schemaname = 'public'"


def sqlalchemy_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


class SqliteTemplate:
    """One migrated SQLite file; each test gets a copy."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "migrated.db"
        database = Database(f"sqlite:///{self.path}")
        database.upgrade()
        database.dispose()  # the last connection closed: the WAL is in the file and removed
        leftovers = [p.name for p in directory.iterdir() if p != self.path]
        assert not leftovers, f"the migrated template left {leftovers} beside it"

    def copy_to(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path, path)
        path.chmod(0o600)


@dataclass
class _Baseline:
    """A freshly migrated PostgreSQL database: its schema, the rows migrations wrote, its sequences."""

    fingerprint: list[tuple[str, ...]]
    tables: list[str]
    rows: dict[str, bytes] = field(default_factory=dict)  # table -> COPY text of its rows
    sequences: dict[str, tuple[int, bool]] = field(default_factory=dict)  # name -> (last_value, is_called)


class PostgresPool:
    """Migrated PostgreSQL databases of one test process, handed out one per test and reset in between."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.base = admin_url.rsplit("/", 1)[0]
        self.idle: list[str] = []
        self.baseline: _Baseline | None = None

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def take(self) -> str:
        """The name of a migrated database that no one else uses."""
        if self.idle:
            return self.idle.pop()
        name = _new_name()
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            admin.execute(sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(sql.Identifier(name)))
        database = Database(sqlalchemy_url(self.url(name)))
        database.upgrade()
        database.dispose()
        if self.baseline is None:
            with psycopg.connect(self.url(name)) as conn:
                self.baseline = _capture(conn)
        return name

    def give_back(self, name: str) -> None:
        """After the test: reset to the migrated state under a new name for the next test, or drop it."""
        try:
            fresh = self._reset(name)
        except Exception:  # a test left it in a state we do not undo: drop it (it may carry another name now)
            self.drop(name)
            return
        self.idle.append(fresh)

    def _reset(self, name: str) -> str:
        assert self.baseline is not None
        fresh = _new_name()
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            for _attempt in range(10):  # a pool of the last test may reconnect between the two statements
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
                try:
                    admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(name),
                                                                               sql.Identifier(fresh)))
                    break
                except psycopg.errors.ObjectInUse:
                    continue
            else:
                raise RuntimeError(f"{name} is still in use")
        with psycopg.connect(self.url(fresh)) as conn:
            if _fingerprint(conn) != self.baseline.fingerprint:
                self.drop(fresh)
                raise RuntimeError("the test changed the schema")
            _restore(conn, self.baseline)
        return fresh

    def drop(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def close(self) -> None:
        while self.idle:
            self.drop(self.idle.pop())


def _new_name() -> str:
    return f"maild_t_{uuid.uuid4().hex[:12]}"


def _fingerprint(conn: psycopg.Connection) -> list[tuple[str, ...]]:
    return [tuple(row) for row in conn.execute(SCHEMA_FINGERPRINT).fetchall()]


def _capture(conn: psycopg.Connection) -> _Baseline:
    tables = [row[0] for row in conn.execute(TABLES).fetchall()]
    baseline = _Baseline(_fingerprint(conn), tables)
    with conn.cursor() as cur:
        for table in tables:
            data = b""
            with cur.copy(sql.SQL("COPY {} TO STDOUT").format(sql.Identifier(table))) as copy:
                for chunk in copy:
                    data += bytes(chunk)
            if data:
                baseline.rows[table] = data
        for name, called in conn.execute(SEQUENCES).fetchall():
            value = conn.execute(sql.SQL("SELECT last_value FROM {}").format(sql.Identifier(name))).fetchone()
            assert value is not None
            baseline.sequences[name] = (int(value[0]), bool(called))
    conn.rollback()
    return baseline


def _restore(conn: psycopg.Connection, baseline: _Baseline) -> None:
    """Every table as the migrations left it: rows and sequences, in one transaction. DELETE with the foreign keys'
    triggers off (superuser) is much faster on small tables than TRUNCATE, which makes new files for each."""
    with conn.cursor() as cur:
        try:
            cur.execute("SET LOCAL session_replication_role = replica")
        except psycopg.errors.InsufficientPrivilege:
            conn.rollback()
            tables = sql.SQL(", ").join(sql.Identifier(t) for t in baseline.tables)
            cur.execute(sql.SQL("TRUNCATE {} CASCADE").format(tables))
        else:
            for table in baseline.tables:
                cur.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
        for table, data in baseline.rows.items():
            with cur.copy(sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(table))) as copy:
                copy.write(data)
        for name, (value, called) in baseline.sequences.items():
            cur.execute("SELECT setval(%s::regclass, %s, %s)", (sql.Identifier(name).as_string(conn), value, called))
    conn.commit()
