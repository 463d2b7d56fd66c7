"""What follows from a notice, in the matching stage's transaction: tie it to our outbox rows, decide whose it is,
record each recipient (`bounces`), mark the row `bounced`, put `mail.bounced` on the timeline, count it against
the address's health (only for an address we sent to); and clear an address a person writes from again."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Text, cast, func, select, update

from maild.bounces import health
from maild.bounces.model import FailedRecipient
from maild.classify.base import BOUNCE, FEEDBACK, HUMAN, Classification
from maild.config import MachineMailConfig
from maild.matchers.chain import Decision
from maild.matchers.normalize import normalize_address
from maild.store.db import Database
from maild.store.models import Bounce, Event, OutboxMessage, RuleLedger

log = logging.getLogger("maild.bounces")
_ob, _b, _ev, _led = OutboxMessage.__table__, Bounce.__table__, Event.__table__, RuleLedger.__table__
NOTICES = (BOUNCE, FEEDBACK)
EVENT_OF = {"failed": "mail.bounced", "delayed": "mail.delayed", "complaint": "mail.complained"}


@dataclass
class Notice:
    """A stored bounce or complaint report, with the outbox rows of ours it is about (VERP row first)."""

    message_id: int
    classification: Classification
    rows: list[Any] = field(default_factory=list)


def notices(conn: Connection, messages: Sequence[Any]) -> dict[int, Notice]:
    """The bounces and complaint reports among stored message rows, tied to our outbox rows by token."""
    found: dict[int, Notice] = {}
    for row in messages:
        if row.kind in NOTICES:
            classification = Classification.from_json(row.machine)
            if classification is not None:
                found[row.id] = Notice(row.id, classification)
    tokens = {t.lower() for n in found.values() for t in [*n.classification.tokens, n.classification.verp_token] if t}
    if not tokens:
        return found
    rows = conn.execute(select(_ob.c.id, _ob.c.tracking_token, _ob.c.thirdparty_id, _ob.c.contact_id,
                               _ob.c.recipients, _ob.c.idempotency_key, _ob.c.subject, _ob.c.status)
                        .where(func.lower(_ob.c.tracking_token).in_(sorted(tokens)))).all()
    by_token = {row.tracking_token.lower(): row for row in rows}
    for notice in found.values():
        verp = (notice.classification.verp_token or "").lower()
        ordered = [verp] if verp else []
        ordered += [t.lower() for t in notice.classification.tokens if t.lower() != verp]
        notice.rows = [by_token[t] for t in ordered if t in by_token]
    return found


def decision(notice: Notice) -> Decision:
    """A notice belongs to the third party of the mail it is about; unknown mail: nobody's (its own folder)."""
    what = "complaint" if notice.classification.kind == FEEDBACK else "delivery notice"
    for row in notice.rows:
        if row.thirdparty_id is not None:
            return Decision("matched", row.thirdparty_id, row.contact_id, "bounce", 0.99,
                            f"{what} about our mail #{row.id} to {', '.join(row.recipients)}")
    if notice.rows:
        return Decision("unmatched", None, None, "bounce", 0.0,
                        f"{what} about our mail #{notice.rows[0].id}, which went to no third party")
    return Decision("unmatched", None, None, "bounce", 0.0, f"{what} about mail we cannot identify")


def act(db: Database, conn: Connection, decided: dict[int, Notice], thirdparties: dict[int, int | None],
        settings: MachineMailConfig, now: datetime) -> int:
    """Record every recipient of the decided notices and what follows; returns the outbox rows marked bounced."""
    bounced = 0
    for notice in decided.values():
        recipients = list(notice.classification.recipients)
        verp_row = notice.rows[0] if notice.rows and notice.classification.verp_token else None
        if not recipients and verp_row is not None and verp_row.recipients:
            # A notice to the VERP address in a format nobody reads: it is about that row's recipient.
            recipients = [FailedRecipient(address=str(verp_row.recipients[0]).lower(), action="failed", status=None,
                                          diagnostic="notice to our VERP address, in a format maild cannot read",
                                          hard=False, reason="delivery failed")]
        for recipient in recipients:
            bounced += _one(db, conn, notice, recipient, thirdparties.get(notice.message_id), settings, now)
    return bounced


def _one(db: Database, conn: Connection, notice: Notice, recipient: FailedRecipient, thirdparty_id: int | None,
         settings: MachineMailConfig, now: datetime) -> int:
    address = normalize_address(recipient.address)
    row = next((r for r in notice.rows if address in {normalize_address(a) for a in r.recipients or []}), None)
    counted = row is not None or _sent_to(conn, recipient.address)
    inserted = conn.execute(db.insert_ignore(_b).values(
        message_id=notice.message_id, outbox_id=row.id if row is not None else None, address=recipient.address[:320],
        action=recipient.action, status=recipient.status, diagnostic=recipient.diagnostic,
        reason=recipient.reason[:100], hard=recipient.hard, counted=counted, created_at=now)).rowcount
    if not inserted:
        return 0  # recorded before (the same notice again)
    marked = 0
    if row is not None and recipient.action == "failed":
        error = f"bounced: {recipient.address} {recipient.status or ''} {recipient.reason}: {recipient.diagnostic}"
        marked = conn.execute(update(_ob).where(_ob.c.id == row.id, _ob.c.status.in_(("sent", "failed")))
                              .values(status="bounced", last_error=error[:2000])).rowcount
    state = None
    if counted and recipient.action in ("failed", "complaint"):
        state = health.record_failure(conn, recipient.address, hard=recipient.hard or recipient.action == "complaint",
                                      reason=f"{recipient.status or ''} {recipient.reason}".strip(),
                                      status=recipient.status, at=now, message_id=notice.message_id,
                                      soft_limit=settings.soft_bounce_limit, soft_window=settings.soft_bounce_window)
    data: dict[str, Any] = {"address": recipient.address, "action": recipient.action, "status": recipient.status,
                            "diagnostic": recipient.diagnostic[:500], "hard": recipient.hard,
                            "reason": recipient.reason, "counted": counted, "address_state": state}
    if not counted:
        data["not_counted"] = "we never sent to this address: a forged or misdirected notice"
    if row is not None:
        data.update(outbox_id=row.id, subject=row.subject, key=row.idempotency_key, **_ledger_subject(conn, row))
    conn.execute(_ev.insert().values(type=EVENT_OF.get(recipient.action, "mail.bounced"), occurred_at=now,
                                     recorded_at=now, thirdparty_id=(row.thirdparty_id if row is not None else None)
                                     or thirdparty_id, message_id=notice.message_id, data=data))
    log.info("%s %s %s", recipient.action, recipient.address, recipient.status or "",
             extra={"fields": {"message": notice.message_id, "outbox_id": row.id if row is not None else None,
                               "counted": counted, "state": state}})
    return marked


def _sent_to(conn: Connection, address: str) -> bool:
    """Whether any mail of ours went to the address (forged notices name addresses we never mailed)."""
    wanted = normalize_address(address)
    if wanted is None:
        return False
    domain = wanted.rpartition("@")[2]
    query = select(_ob.c.recipients).where(_ob.c.status.in_(("sent", "bounced")))
    if domain.isascii():
        pattern = "%@" + domain.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(func.lower(cast(_ob.c.recipients, Text)).like(pattern, escape="\\"))
    return any(normalize_address(r) == wanted for (recipients,) in conn.execute(query) for r in recipients or [])


def _ledger_subject(conn: Connection, row: Any) -> dict[str, Any]:
    """The rule and subject (an invoice, a meeting) of the action that queued the mail, for rules on mail.bounced."""
    key = str(row.idempotency_key).split("/", 1)[0]
    found = conn.execute(select(_led.c.rule, _led.c.subject).where(_led.c.key == key)).first()
    if found is None:
        return {}
    kind, _, number = str(found.subject).partition(":")
    out: dict[str, Any] = {"sent_by_rule": found.rule}
    if kind in ("invoice", "meeting") and number.isdigit():
        out[f"{kind}_id"] = int(number)
    return out


def clear_health(conn: Connection, messages: Sequence[Any], thirdparties: dict[int, int | None],
                 now: datetime) -> int:
    """Human mail from an address marked undeliverable (or with soft bounces) clears it, on the timeline."""
    people = [row for row in messages if row.kind in (None, HUMAN) and row.auth != "fail" and row.from_addr]
    marked = health.of(conn, [row.from_addr for row in people])  # one query for the batch
    if not any(h.state != health.OK for h in marked.values()):
        return 0
    cleared = 0
    for row in people:
        if health.key(row.from_addr) not in marked:
            continue
        before = health.clear(conn, row.from_addr, row.id, now)
        if before is None:
            continue
        cleared += 1
        conn.execute(_ev.insert().values(type="address.cleared", occurred_at=now, recorded_at=now,
                                         thirdparty_id=thirdparties.get(row.id), message_id=row.id,
                                         data={"address": before.address, "was": before.describe()}))
    return cleared
