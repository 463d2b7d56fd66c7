"""Web users: add, list, disable, change password, log in (throttled) and end their sessions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from maild.clock import utcnow
from maild.config import WebConfig
from maild.services import audit, passwords, throttle
from maild.services.actor import ROLES, Actor
from maild.store.db import Database
from maild.store.models import User

_u = User.__table__
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")


class LoginRefused(Exception):
    """Wrong user name or password (never which), a disabled user, or too many failures (`retry_after` set)."""

    def __init__(self, message: str, retry_after: datetime | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class UserView:
    id: int
    username: str
    role: str
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "username": self.username, "role": self.role, "disabled": self.disabled,
                "created_at": self.created_at.isoformat(),
                "last_login_at": self.last_login_at.isoformat() if self.last_login_at else None}


def _view(row: Any) -> UserView:
    return UserView(row.id, row.username, row.role, row.disabled, row.created_at, row.last_login_at)


def add_user(db: Database, actor: Actor, username: str, password: str, role: str) -> UserView:
    actor.require("admin")
    if not _NAME.match(username):
        raise ValueError("a user name is 1-100 letters, digits, . _ @ - (starting with a letter or digit)")
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (expected one of: {', '.join(ROLES)})")
    hashed = passwords.hash_password(password)
    with db.engine.begin() as conn:
        if conn.execute(select(_u.c.id).where(_u.c.username == username)).first() is not None:
            raise ValueError(f"user {username!r} already exists")
        user_id = conn.execute(_u.insert().returning(_u.c.id).values(
            username=username, password_hash=hashed, role=role, disabled=False, session_epoch=0,
            created_at=utcnow())).scalar_one()
        audit.record(conn, actor, "user.add", f"user:{user_id}", after={"username": username, "role": role})
        row = conn.execute(select(_u).where(_u.c.id == user_id)).one()
    return _view(row)


def list_users(db: Database) -> list[UserView]:
    with db.engine.connect() as conn:
        return [_view(r) for r in conn.execute(select(_u).order_by(_u.c.username))]


def _find(conn: Connection, username: str) -> Any:
    row = conn.execute(select(_u).where(_u.c.username == username)).one_or_none()
    if row is None:
        raise LookupError(f"no user {username!r}")
    return row


def set_disabled(db: Database, actor: Actor, username: str, disabled: bool = True) -> None:
    """Disable (or enable again) a user; disabling ends their sessions and their API tokens stop working."""
    actor.require("admin")
    with db.engine.begin() as conn:
        row = _find(conn, username)
        conn.execute(_u.update().where(_u.c.id == row.id).values(disabled=disabled,
                                                                  session_epoch=row.session_epoch + 1))
        audit.record(conn, actor, "user.disable" if disabled else "user.enable", f"user:{row.id}",
                     before={"disabled": row.disabled}, after={"disabled": disabled})


def set_password(db: Database, actor: Actor, username: str, password: str) -> None:
    """A new password (an admin for anyone, a user for themself); ends the user's other sessions."""
    if actor.name != username or actor.via == "api":
        actor.require("admin")
    hashed = passwords.hash_password(password)
    with db.engine.begin() as conn:
        row = _find(conn, username)
        conn.execute(_u.update().where(_u.c.id == row.id).values(password_hash=hashed,
                                                                  session_epoch=row.session_epoch + 1))
        audit.record(conn, actor, "user.passwd", f"user:{row.id}", after={"password": "changed"})


def log_in(db: Database, cfg: WebConfig, username: str, password: str) -> tuple[Actor, int]:
    """(the actor, their session epoch) for a right password; LoginRefused otherwise. Failures per user name are
    counted (also for names that do not exist), and past `cfg.login_max_failures` the name waits."""
    key = username.strip().lower()[:200]
    now = utcnow()
    with db.engine.begin() as conn:
        until = throttle.locked_until(conn, key, now)
        if until is not None:
            raise LoginRefused("too many failed logins; try again later", until)
        row = conn.execute(select(_u).where(_u.c.username == username.strip())).one_or_none()
    ok = passwords.verify(row.password_hash if row is not None else None, password)
    with db.engine.begin() as conn:
        if not ok or row is None or row.disabled:
            lock = throttle.failed(conn, key, now, max_failures=cfg.login_max_failures,
                                   window=cfg.login_lockout_seconds)
            refused = LoginRefused("wrong user name or password" + (
                "; too many failed logins: try again later" if lock else ""), lock)
        else:
            throttle.succeeded(conn, key)
            conn.execute(_u.update().where(_u.c.id == row.id).values(last_login_at=now))
            return Actor(row.username, row.role, "web", row.id), row.session_epoch
    raise refused


def session_actor(db: Database, user_id: int, epoch: int) -> Actor | None:
    """The actor of a session cookie, if the user still exists, is enabled and the session was not ended."""
    with db.engine.connect() as conn:
        row = conn.execute(select(_u.c.username, _u.c.role, _u.c.disabled, _u.c.session_epoch)
                           .where(_u.c.id == user_id)).one_or_none()
    if row is None or row.disabled or row.session_epoch != epoch:
        return None
    return Actor(row.username, row.role, "web", user_id)


def end_sessions(db: Database, user_id: int) -> None:
    """Logout: every session cookie of this user stops working."""
    with db.engine.begin() as conn:
        conn.execute(_u.update().where(_u.c.id == user_id).values(session_epoch=_u.c.session_epoch + 1))


def count(db: Database) -> int:
    with db.engine.connect() as conn:
        return len(conn.execute(select(_u.c.id).limit(1)).all())
