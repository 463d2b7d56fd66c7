"""Notes on a third party's timeline. A note is an event (`note.added`); it has no table of its own."""

from __future__ import annotations

from sqlalchemy import Connection, select

from maild.business.timeline import append_event
from maild.directory import fields
from maild.store.models import ThirdParty

_tp = ThirdParty.__table__


def add_note(conn: Connection, *, thirdparty_id: int, text: str, author: str | None = None,
             rule: str | None = None, message_id: int | None = None) -> int:
    """Append a `note.added` event {text, author, rule} in the caller's transaction; returns the event's id."""
    clean_text = fields.text(text, "note", 100_000, required=True)
    if conn.execute(select(_tp.c.id).where(_tp.c.id == thirdparty_id)).first() is None:
        raise LookupError(f"no third party with id {thirdparty_id}")
    data = {"text": clean_text, "author": fields.text(author, "author", 200), "rule": fields.text(rule, "rule", 200)}
    return append_event(conn, "note.added", thirdparty_id=thirdparty_id, message_id=message_id, data=data)
