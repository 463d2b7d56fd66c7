"""Personal API tokens: created for a user (shown once), stored as sha256, revocable; `Authorization: Bearer`."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from maild.clock import utcnow
from maild.services import audit
from maild.services.actor import Actor
from maild.store.db import Database
from maild.store.models import ApiToken, User

_t, _u = ApiToken.__table__, User.__table__
PREFIX = "maild_"


@dataclass(frozen=True)
class TokenView:
    id: int
    username: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "user": self.username, "name": self.name, "created_at": self.created_at.isoformat(),
                "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
                "revoked": self.revoked_at is not None}


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def create(db: Database, actor: Actor, username: str, name: str = "") -> tuple[int, str]:
    """(id, the token): the only time the token is seen; the database keeps its sha256."""
    if actor.name != username:
        actor.require("admin")
    token = PREFIX + secrets.token_urlsafe(32)
    with db.engine.begin() as conn:
        user_id = conn.execute(select(_u.c.id).where(_u.c.username == username)).scalar()
        if user_id is None:
            raise LookupError(f"no user {username!r}")
        token_id = conn.execute(_t.insert().returning(_t.c.id).values(
            user_id=user_id, name=name[:200], token_sha256=_digest(token), created_at=utcnow())).scalar_one()
        audit.record(conn, actor, "token.create", f"token:{token_id}", after={"user": username, "name": name})
    return int(token_id), token


def listing(db: Database, username: str | None = None) -> list[TokenView]:
    query = (select(_t.c.id, _u.c.username, _t.c.name, _t.c.created_at, _t.c.last_used_at, _t.c.revoked_at)
             .join(_u, _u.c.id == _t.c.user_id).order_by(_t.c.id))
    if username:
        query = query.where(_u.c.username == username)
    with db.engine.connect() as conn:
        return [TokenView(*row) for row in conn.execute(query)]


def revoke(db: Database, actor: Actor, token_id: int) -> bool:
    with db.engine.begin() as conn:
        row = conn.execute(select(_t.c.revoked_at, _u.c.username).join(_u, _u.c.id == _t.c.user_id)
                           .where(_t.c.id == token_id)).one_or_none()
        if row is None:
            raise LookupError(f"no token {token_id}")
        if row.username != actor.name:
            actor.require("admin")
        if row.revoked_at is not None:
            return False
        conn.execute(_t.update().where(_t.c.id == token_id).values(revoked_at=utcnow()))
        audit.record(conn, actor, "token.revoke", f"token:{token_id}", before={"revoked": False},
                     after={"revoked": True})
    return True


def actor_for(db: Database, token: str) -> Actor | None:
    """The API actor a bearer token stands for; None when unknown, revoked or its user disabled."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    with db.engine.begin() as conn:
        row = conn.execute(select(_t.c.id, _u.c.id.label("user_id"), _u.c.username, _u.c.role, _u.c.disabled)
                           .join(_u, _u.c.id == _t.c.user_id)
                           .where(_t.c.token_sha256 == _digest(token), _t.c.revoked_at.is_(None))).one_or_none()
        if row is None or row.disabled:
            return None
        conn.execute(_t.update().where(_t.c.id == row.id).values(last_used_at=utcnow()))
    return Actor(row.username, row.role, "api", row.user_id)
