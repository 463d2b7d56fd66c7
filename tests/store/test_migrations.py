from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

from maild.store.db import HEAD_REVISION, MIGRATIONS_DIR, Database


def test_migrations_build_exactly_the_models_schema(db: Database) -> None:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": _not_search_index})
        diff = compare_metadata(context, SQLModel.metadata)
    assert diff == []


def _not_search_index(obj: object, name: str | None, kind: str, reflected: bool, _compare_to: object) -> bool:
    """The full-text search structures of 0007_web are not models: SQLite's FTS5 table (and its shadow tables),
    PostgreSQL's expression index."""
    return not (name or "").startswith(("messages_fts", "ix_messages_fulltext"))


def test_head_constant_matches_the_newest_migration(db: Database) -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD_REVISION
    assert db.revision() == HEAD_REVISION
    db.upgrade()  # idempotent
    assert db.revision() == HEAD_REVISION


def test_the_rules_cursor_starts_after_the_history_of_an_existing_installation(db: Database) -> None:
    """An installation from before the rules (schema 0004) keeps its history out of the rules; a new one has
    none, and everything recorded after the upgrade is seen."""
    from alembic import command
    from sqlalchemy import select

    from maild.store.models import RuleCursor

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0004")
        assert conn.execute(select(RuleCursor.__table__)).first() is None
        for n in range(3):
            conn.exec_driver_sql("INSERT INTO events (type, occurred_at, recorded_at, data) "
                                 f"VALUES ('mail.received', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, '{{\"n\": {n}}}')")
        newest = conn.exec_driver_sql("SELECT MAX(id) FROM events").scalar()
        command.upgrade(cfg, "head")
        cursor = conn.execute(select(RuleCursor.__table__.c.last_event_id)
                              .where(RuleCursor.__table__.c.name == "events")).scalar()
    assert cursor == newest
