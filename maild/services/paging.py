"""Opaque cursors for keyset paging: the last shown row's sort key, as URL-safe text."""

from __future__ import annotations

import base64
import json
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
