"""A database that refuses new audit entries (a trigger), to show a change and its entry commit together."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text

from maild.store.db import Database

_SQLITE = ("CREATE TRIGGER test_refuse_audit BEFORE INSERT ON audit_log "
           "BEGIN SELECT RAISE(ABORT, 'audit entry refused'); END")
_PG = ("CREATE FUNCTION test_refuse_audit() RETURNS trigger LANGUAGE plpgsql AS "
       "$$ BEGIN RAISE EXCEPTION 'audit entry refused'; END $$",
       "CREATE TRIGGER test_refuse_audit BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION test_refuse_audit()")


@contextmanager
def audit_refused(db: Database) -> Iterator[None]:
    """While inside, every INSERT into audit_log fails (and with it the transaction that makes it)."""
    with db.engine.begin() as conn:
        for statement in (_SQLITE,) if db.is_sqlite else _PG:
            conn.execute(text(statement))
    try:
        yield
    finally:
        with db.engine.begin() as conn:
            conn.execute(text("DROP TRIGGER test_refuse_audit" + ("" if db.is_sqlite else " ON audit_log")))
            if not db.is_sqlite:
                conn.execute(text("DROP FUNCTION test_refuse_audit()"))
