"""The rule ledger: one row per action, keyed `rule:subject:step[:once_per]`, so nothing runs twice.

Protocol (the unique `key` decides who acts):
- DB-only actions: in ONE transaction, insert the row (`running`, insert-ignore), act, append the
  `rule.action` event, mark it `done`. Another daemon's insert waits for ours and then does nothing.
- `send` and `webhook`: insert the row `running` with the evaluated plan in `detail` and commit; act; then
  compare-and-set `running -> done` (plus the event) or `-> failed`. A `running` row whose holder died (or that
  is older than `STALE_AFTER`) is taken over from its stored plan: the outbox refuses a second mail for the same
  key, the webhook receiver gets the same Idempotency-Key, and only the CAS winner writes the event.
- Failed webhooks are retried from their plan (`attempts`, `next_attempt_at` in detail) up to `WEBHOOK_ATTEMPTS`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from maild.business.timeline import append_event
from maild.clock import as_utc
from maild.rules.context import any_of
from maild.store.db import Database
from maild.store.models import RuleLedger

T = RuleLedger.__table__
STATUSES = ("running", "done", "failed")
KEY_CHARS = 500
STALE_AFTER = timedelta(minutes=5)  # a `running` send/webhook of a live holder elsewhere is taken over after this
WEBHOOK_ATTEMPTS = 5
WEBHOOK_BACKOFF = timedelta(minutes=1)  # doubled per attempt, capped at one hour


def make_key(rule: str, subject: str, step: int | str, once: Any = None) -> str:
    key = f"{rule}:{subject}:{step}" + ("" if once is None else f":{once}")
    if len(key) > KEY_CHARS:  # an overlong once_per value: keep it unique, keep it short
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        key = key[:KEY_CHARS - 33] + "#" + digest
    return key


@dataclass(frozen=True)
class Entry:
    """What a ledger row says about an action (everything but its status and outcome)."""

    key: str
    rule: str
    file: str
    trigger: str
    subject: str
    step: int
    action: str
    reason: str
    thirdparty_id: int | None = None
    message_id: int | None = None


def jsonable(value: Any) -> Any:
    """A JSON-safe copy (datetimes and dates as ISO text, decimals as text)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return (as_utc(value) or value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal | timedelta):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _row(entry: Entry, status: str, now: datetime, detail: dict[str, Any]) -> dict[str, Any]:
    return {"key": entry.key, "rule": entry.rule, "file": entry.file, "trigger": entry.trigger[:200],
            "subject": entry.subject[:200], "step": entry.step, "action": entry.action, "status": status,
            "reason": entry.reason, "detail": jsonable(detail), "thirdparty_id": entry.thirdparty_id,
            "created_at": now, "finished_at": None if status == "running" else now}


# The ledger's statements are built once, their values bound at execution: SQLAlchemy then reuses the compiled
# statement (building one with the values in it costs more than running it, thousands of times in a sweep).
_INSERT_IGNORE: dict[bool, Any] = {}
_FINISH = update(T).where(T.c.key == bindparam("entry_key"), T.c.status == "running").values(
    status="done", finished_at=bindparam("when", type_=T.c.finished_at.type),
    detail=bindparam("new_detail", type_=T.c.detail.type))


def _insert_ignore(db: Database) -> Any:
    statement = _INSERT_IGNORE.get(db.is_sqlite)
    if statement is None:
        statement = _INSERT_IGNORE[db.is_sqlite] = db.insert_ignore(T).returning(T.c.id)
    return statement


def claim(db: Database, conn: Connection, entry: Entry, now: datetime, detail: dict[str, Any]) -> bool:
    """Insert the row as `running`; True when this call inserted it (and so must act)."""
    inserted = conn.execute(_insert_ignore(db), _row(entry, "running", now, detail))
    return inserted.scalar() is not None


def record_failed(db: Database, conn: Connection, entry: Entry, now: datetime, error: str,
                  detail: dict[str, Any] | None = None) -> bool:
    """A failure before anything ran (a condition or value that did not evaluate): one row per key."""
    values = _row(entry, "failed", now, {**(detail or {}), "error": error[:2000]})
    return conn.execute(_insert_ignore(db), values).scalar() is not None


def finish(conn: Connection, entry: Entry, now: datetime, detail: dict[str, Any], *, summary: str = "") -> bool:
    """`running -> done` and the `rule.action` timeline event, once (only the compare-and-set winner writes it)."""
    changed = conn.execute(_FINISH, {"entry_key": entry.key, "when": now, "new_detail": jsonable(detail)}).rowcount
    if changed != 1:
        return False
    append_event(conn, "rule.action", thirdparty_id=entry.thirdparty_id, message_id=entry.message_id,
                 occurred_at=now, data={"rule": entry.rule, "action": entry.action, "key": entry.key,
                                        "subject": entry.subject, "reason": entry.reason, "summary": summary,
                                        "detail": jsonable({k: v for k, v in detail.items() if k != "plan"})})
    return True


def skip(conn: Connection, entry: Entry, now: datetime, detail: dict[str, Any]) -> bool:
    """`running -> skipped`: the action had nothing to do (e.g. a move of mail that is in no IMAP folder); it
    counts as done for the rule, but is no event on the timeline (nothing happened)."""
    return conn.execute(update(T).where(T.c.key == entry.key, T.c.status == "running")
                        .values(status="skipped", finished_at=now, detail=jsonable(detail))).rowcount == 1


def fail(conn: Connection, key: str, now: datetime, detail: dict[str, Any]) -> bool:
    return conn.execute(update(T).where(T.c.key == key, T.c.status == "running")
                        .values(status="failed", finished_at=now, detail=jsonable(detail))).rowcount == 1


def take_over(conn: Connection, key: str, expected: str, now: datetime, detail: dict[str, Any]) -> bool:
    """`expected -> running` for a retry or a takeover; True for the one caller that won."""
    return conn.execute(update(T).where(T.c.key == key, T.c.status == expected)
                        .values(status="running", finished_at=None, detail=jsonable(detail))).rowcount == 1


def statuses(conn: Connection, rule: str, subjects: Iterable[str]) -> dict[str, str]:
    """key -> status of every ledger row of `rule` for these subjects."""
    wanted = sorted(set(subjects))
    if not wanted:
        return {}
    query = select(T.c.key, T.c.status).where(T.c.rule == rule, any_of(conn, T.c.subject, wanted))
    return {key: status for key, status in conn.execute(query)}


def get(conn: Connection, key: str) -> Any:
    return conn.execute(select(T).where(T.c.key == key)).first()


def cause_of(conn: Connection, key: str) -> Any:
    """The ledger row of the action behind an event's cause key: the key itself, or, for an outbox key of one
    recipient among several (`KEY/address`), the part before a '/'. None when no rule did it."""
    candidates = [key] + [key[:i] for i in range(len(key) - 1, 0, -1) if key[i] == "/"]
    rows = conn.execute(select(T.c.key, T.c.rule, T.c.subject).where(T.c.key.in_(candidates))).all()
    return max(rows, key=lambda row: len(row.key), default=None)


def unfinished(conn: Connection) -> list[Any]:
    """Rows a later pass may have to complete: running sends/webhooks, failed webhooks."""
    return list(conn.execute(select(T).where(
        ((T.c.status == "running") & T.c.action.in_(("send", "webhook")))
        | ((T.c.status == "failed") & (T.c.action == "webhook"))).order_by(T.c.id)))


def entry_of(row: Any, message_id: int | None = None) -> Entry:
    return Entry(key=row.key, rule=row.rule, file=row.file, trigger=row.trigger, subject=row.subject,
                 step=row.step, action=row.action, reason=row.reason, thirdparty_id=row.thirdparty_id,
                 message_id=message_id)


def webhook_delay(attempts: int) -> timedelta:
    return min(timedelta(hours=1), WEBHOOK_BACKOFF * (2 ** max(0, attempts - 1)))
