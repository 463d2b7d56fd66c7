"""The `db` fixture's fast databases are exactly as new and migrated, whatever the test before did with its own."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from maild.directory.service import add_thirdparty
from maild.store.db import HEAD_REVISION, Database
from tests.conftest import PG_ADMIN
from tests.support.databases import PostgresPool, SqliteTemplate, sqlalchemy_url


def _state(database: Database) -> tuple[list[tuple[object, ...]], str | None]:
    with database.engine.connect() as conn:
        cursors = [tuple(row) for row in conn.execute(text("SELECT name, last_event_id FROM rule_cursors"))]
        tables = conn.execute(text("SELECT count(*) FROM thirdparties")).scalar_one()
    assert tables == 0
    return cursors, database.revision()


def test_a_reused_postgres_database_is_as_migrated_under_a_new_name() -> None:
    pool = PostgresPool(PG_ADMIN)
    try:
        name = pool.take()
        first = Database(sqlalchemy_url(pool.url(name)))
        assert _state(first) == ([("events", 0)], HEAD_REVISION)
        assert add_thirdparty(first, name="Left behind") == 1
        left_open = first.engine.connect()  # a connection the last test forgot
        pool.give_back(name)
        again = pool.take()
        assert again != name, "renamed: what the last test left running cannot reach it"
        with pytest.raises(psycopg.OperationalError, match="does not exist"):
            psycopg.connect(pool.url(name)).close()
        second = Database(sqlalchemy_url(pool.url(again)))
        assert _state(second) == ([("events", 0)], HEAD_REVISION), "rows gone, the migrations' rows back"
        assert add_thirdparty(second, name="Next") == 1, "ids start again at 1"
        left_open.close()
        first.dispose()
        second.dispose()
        with second.engine.begin() as conn:
            conn.execute(text("CREATE TABLE stray (x integer)"))
        second.dispose()
        pool.give_back(again)
        assert pool.idle == [], "a database whose schema changed is dropped, not reused"
    finally:
        pool.close()


def test_a_sqlite_copy_is_migrated_and_owner_only(tmp_path: Path) -> None:
    template = SqliteTemplate(tmp_path / "template")
    copy = tmp_path / "test" / "maild.db"
    template.copy_to(copy)
    database = Database(f"sqlite:///{copy}")
    assert _state(database) == ([("events", 0)], HEAD_REVISION)
    assert copy.stat().st_mode & 0o777 == 0o600
    database.dispose()
