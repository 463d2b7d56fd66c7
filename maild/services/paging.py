"""Opaque cursors for keyset paging: the last shown row's sort key, as URL-safe text."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class BadCursor(ValueError):
    """A cursor that was not made by `encode` (or was changed)."""


def encode(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).rstrip(b"=").decode()


def decode(cursor: str | None, size: int) -> list[Any] | None:
    """The key of a cursor (a list of `size` values), None for no cursor; BadCursor for anything else."""
    if not cursor:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError):
        raise BadCursor("invalid cursor") from None
    if not isinstance(key, list) or len(key) != size:
        raise BadCursor("invalid cursor")
    return key


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None  # None: this is the last page


def by_id(db: Any, stmt: Any, id_column: Any, cursor: str | None, limit: int, row: Callable[[Any], T], *,
          newest_first: bool = True) -> Page[T]:
    """One keyset page of `stmt` ordered by `id_column` (newest first, or oldest first), each row made by `row`;
    the cursor is the last shown id. One statement: `limit + 1` rows tell whether there is a next page."""
    key = decode(cursor, 1)
    stmt = stmt.order_by(id_column.desc() if newest_first else id_column).limit(limit + 1)
    if key is not None:
        stmt = stmt.where(id_column < int(key[0]) if newest_first else id_column > int(key[0]))
    with db.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    items = [row(r) for r in rows[:limit]]
    return Page(items, encode([rows[limit - 1].id]) if len(rows) > limit else None)
