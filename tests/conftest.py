"""Fixtures that start the real components: PostgreSQL databases, a private Dovecot per session."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from maild.store.db import Database
from tests.support.databases import PostgresPool, SqliteTemplate, sqlalchemy_url
from tests.support.dovecot import Dovecot

PG_ADMIN = os.environ.get("MAILD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(autouse=True)
def _leaves_process_state_alone() -> Iterator[None]:
    """Tests share worker processes (pytest-xdist): one that changes the environment, the working directory or a
    signal handler without undoing it would change what the next tests on its worker see."""
    environ, cwd = dict(os.environ), os.getcwd()
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    keys = {*environ, *os.environ} - {"PYTEST_CURRENT_TEST"}  # pytest's own, set for each phase
    changed = sorted(k for k in keys if environ.get(k) != os.environ.get(k))
    assert not changed, f"the test left environment variables changed (use monkeypatch.setenv): {changed}"
    assert os.getcwd() == cwd, "the test left the working directory changed (use monkeypatch.chdir)"
    moved = [signal.Signals(s).name for s, handler in handlers.items() if signal.getsignal(s) != handler]
    assert not moved, f"the test left signal handlers changed: {moved}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"maild_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')  # see tests/support/databases.py
    base = PG_ADMIN.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def _migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplate:
    return SqliteTemplate(tmp_path_factory.mktemp("migrated-sqlite"))


@pytest.fixture(scope="session")
def _migrated_postgres() -> Iterator[PostgresPool]:
    pool = PostgresPool(PG_ADMIN)
    yield pool
    pool.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database; already migrated when the test also has `db` (which opens this one): a copy of a migrated
    SQLite file, a PostgreSQL database reset to its migrated state (tests/support/databases.py)."""
    migrated = "db" in request.fixturenames
    if request.param == "sqlite":
        path = tmp_path / "maild.db"
        if migrated:
            request.getfixturevalue("_migrated_sqlite").copy_to(path)
        yield f"sqlite:///{path}"
    elif not migrated:
        yield request.getfixturevalue("pg_url")
    else:
        pool: PostgresPool = request.getfixturevalue("_migrated_postgres")
        name = pool.take()
        try:
            yield pool.url(name)
        finally:
            pool.give_back(name)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(sqlalchemy_url(db_url))
    database.upgrade()
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    """One private Dovecot for the whole test session; each test takes its own user (mailbox)."""
    server = Dovecot(tmp_path_factory.mktemp("dovecot"))
    server.start()
    yield server
    server.close()


@dataclass
class Mailbox:
    server: Dovecot
    user: str
    password: str

    def url(self, folder: str = "INBOX") -> str:
        return f"imap://{quote(self.user, safe='')}:{self.password}@{self.server.host}:{self.server.port}/{folder}"

    def source(self, name: str = "mbox", folders: list[str] | None = None, **extra: object) -> dict[str, object]:
        return {"name": name, "type": "imap", "host": self.server.host, "port": self.server.port,
                "security": "plain", "username": self.user, "password_env": "MAILD_TEST_IMAP_PASSWORD",
                "folders": folders or ["INBOX"], "timeout": 10, **extra}

    def append(self, messages: list[bytes], folder: str = "INBOX") -> None:
        self.server.append_many(self.user, folder, messages)

    def uids(self, folder: str = "INBOX") -> tuple[int, list[int]]:
        with self.server.client(self.user, self.password) as imap:
            info = imap.select_folder(folder, readonly=True)
            return int(info[b"UIDVALIDITY"]), sorted(imap.search("ALL"))

    def subjects(self, folder: str) -> list[str]:
        """The subjects of the mails in `folder`, sorted ([] when there is no such folder)."""
        with self.server.client(self.user, self.password) as imap:
            if not imap.folder_exists(folder):
                return []
            imap.select_folder(folder, readonly=True)
            data = imap.fetch(imap.search("ALL"), ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
            return sorted(v[b"BODY[HEADER.FIELDS (SUBJECT)]"].decode().strip().removeprefix("Subject: ")
                          for v in data.values())


@pytest.fixture
def mailbox(dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> Mailbox:
    """A fresh, empty IMAP account on the session's Dovecot."""
    user = f"u{uuid.uuid4().hex[:10]}@example.test"
    password = "pw-" + uuid.uuid4().hex[:8]
    dovecot.add_user(user, password)
    monkeypatch.setenv("MAILD_TEST_IMAP_PASSWORD", password)
    return Mailbox(dovecot, user, password)
