"""Address health: undeliverable after a hard bounce or a complaint (or enough soft bounces in a window), cleared
by a later human mail from the address; sending to an undeliverable address is refused unless overridden."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update

from maild.clock import as_utc
from maild.matchers.normalize import normalize_address
from maild.store.db import Database
from maild.store.models import AddressHealth

H = AddressHealth.__table__
OK, SOFT, UNDELIVERABLE = "ok", "soft", "undeliverable"


class Undeliverable(ValueError):
    """Sending to an address whose mail bounced for good (or that complained): refused unless overridden."""


@dataclass(frozen=True)
class Health:
    address: str
    state: str
    reason: str
    status: str | None
    since: datetime | None
    soft_count: int
    last_bounce_at: datetime | None
    message_id: int | None
    cleared_at: datetime | None

    def describe(self) -> str:
        when = self.since.strftime("%Y-%m-%d %H:%M") if self.since else "?"
        if self.state == UNDELIVERABLE:
            return f"undeliverable since {when} UTC: {self.reason}"
        if self.state == SOFT:
            return f"{self.soft_count} soft bounce(s), the last: {self.reason}"
        cleared = f" (cleared {self.cleared_at:%Y-%m-%d %H:%M} UTC by mail from the address)" if self.cleared_at else ""
        return f"ok{cleared}"


def key(address: str | None) -> str | None:
    return normalize_address(address)


def of(conn: Connection, addresses: Iterable[str]) -> dict[str, Health]:
    """The health records of these addresses (by their normalised form); addresses without one are left out."""
    keys = sorted({k for k in (key(a) for a in addresses) if k})
    if not keys:
        return {}
    rows = conn.execute(select(H).where(H.c.address.in_(keys))).all()
    return {row.address: _health(row) for row in rows}


def lookup(db: Database, address: str) -> Health | None:
    with db.engine.connect() as conn:
        return of(conn, [address]).get(key(address) or "")


def refuse_undeliverable(conn: Connection, addresses: Iterable[str]) -> None:
    """Raise `Undeliverable` naming the first undeliverable address among `addresses`."""
    for health in of(conn, addresses).values():
        if health.state == UNDELIVERABLE:
            raise Undeliverable(f"{health.address} is {health.describe()}; not sending (override: "
                                f"`maild send --allow-undeliverable`, or a later mail from the address clears it)")


def record_failure(conn: Connection, address: str, *, hard: bool, reason: str, status: str | None, at: datetime,
                   message_id: int, soft_limit: int, soft_window: float) -> str:
    """Count one failed delivery (or a complaint, `hard`) against the address; returns its new state."""
    address_key = key(address)
    if address_key is None:
        return OK
    row = conn.execute(select(H).where(H.c.address == address_key)).first()
    values: dict[str, Any] = {"last_bounce_at": at, "updated_at": at, "status": status}
    if row is None:
        conn.execute(H.insert().values(address=address_key, state=OK, reason="", soft_count=0, updated_at=at))
        row = conn.execute(select(H).where(H.c.address == address_key)).one()
    if hard:
        if row.state == UNDELIVERABLE:
            return UNDELIVERABLE
        values.update(state=UNDELIVERABLE, reason=reason, since=at, message_id=message_id, cleared_at=None,
                      cleared_by_message_id=None)
    else:
        first = as_utc(row.first_soft_at)
        in_window = first is not None and row.state == SOFT and at - first <= timedelta(seconds=soft_window)
        count = (row.soft_count + 1) if in_window else 1
        values.update(soft_count=count, first_soft_at=first if in_window else at, reason=reason)
        if row.state == UNDELIVERABLE:
            values.pop("reason")
            values.pop("soft_count")
        elif count >= soft_limit:
            values.update(state=UNDELIVERABLE, since=at, message_id=message_id,
                          reason=f"{count} soft bounces within {_days(soft_window)}: {reason}")
        else:
            values.update(state=SOFT, since=row.since if row.state == SOFT else at, message_id=message_id)
    conn.execute(update(H).where(H.c.id == row.id).values(**values))
    return str(values.get("state", row.state))


def clear(conn: Connection, address: str | None, message_id: int, at: datetime) -> Health | None:
    """A person wrote from the address: it receives mail again. Returns the record as it was, if it was not ok."""
    address_key = key(address)
    if address_key is None:
        return None
    row = conn.execute(select(H).where(H.c.address == address_key, H.c.state != OK)).first()
    if row is None:
        return None
    conn.execute(update(H).where(H.c.id == row.id).values(state=OK, soft_count=0, first_soft_at=None, cleared_at=at,
                                                           cleared_by_message_id=message_id, updated_at=at))
    return _health(row)


def set_state(db: Database, address: str, state: str, reason: str, at: datetime) -> None:
    """A person's decision (`maild contact health ADDRESS --ok`)."""
    address_key = key(address)
    if address_key is None:
        raise ValueError(f"{address!r} is not a mail address")
    with db.engine.begin() as conn:
        row = conn.execute(select(H.c.id).where(H.c.address == address_key)).first()
        if row is None:
            conn.execute(H.insert().values(address=address_key, state=state, reason=reason, soft_count=0,
                                           since=at, updated_at=at))
        else:
            conn.execute(update(H).where(H.c.id == row.id).values(state=state, reason=reason, since=at, soft_count=0,
                                                                   first_soft_at=None, updated_at=at,
                                                                   cleared_at=at if state == OK else None))


def _health(row: Any) -> Health:
    return Health(address=row.address, state=row.state, reason=row.reason, status=row.status,
                  since=as_utc(row.since), soft_count=row.soft_count, last_bounce_at=as_utc(row.last_bounce_at),
                  message_id=row.message_id, cleared_at=as_utc(row.cleared_at))


def _days(seconds: float) -> str:
    days = seconds / 86400
    return f"{days:g} days" if days >= 1 else f"{seconds:g} s"
