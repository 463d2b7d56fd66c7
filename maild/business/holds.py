"""Holds: an invoice in dunning that waits for a person, visibly (status `held`, a reason, a task, the timeline).

A hold starts when mail needs a person (maild.business.hold_mail) or by hand; the person ends it: `resume`
(dunning goes on), `promise` (it waits until a date, then goes on by itself), `dispute` (status disputed),
or a payment (paid). A hold nobody resolves within `dunning.hold_escalate_days` gets a second task. Every
change is an event: `invoice.held`, `invoice.hold_escalated`, `invoice.resumed`, `invoice.promised`,
`invoice.disputed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, select, update

from maild.business.invoices import find_invoice
from maild.business.tasks import create_task
from maild.business.timeline import append_event
from maild.clock import as_utc
from maild.config import Config
from maild.directory import fields
from maild.store.models import Invoice, InvoiceHold, ThirdParty

_inv, _hold, _tp = Invoice.__table__, InvoiceHold.__table__, ThirdParty.__table__
HELD = "held"
KINDS = ("reply", "number", "phrase", "bounce", "promise", "manual")


@dataclass(frozen=True)
class HoldState:
    """The invoice's active hold, for `invoice show` and `rules why`."""

    kind: str
    reason: str
    owner: str | None
    since: datetime
    until: date | None
    message_id: int | None
    task_id: int | None
    escalated_at: datetime | None


def owner_of(conn: Connection, config: Config, thirdparty_id: int) -> str | None:
    """Who must look: the third party's owner, else `dunning.hold_owner`."""
    owner = conn.execute(select(_tp.c.owner).where(_tp.c.id == thirdparty_id)).scalar()
    return owner or config.dunning.hold_owner


def hold(conn: Connection, config: Config, invoice: Any, *, kind: str, reason: str, now: datetime,
         message_id: int | None = None, until: date | None = None) -> int | None:
    """Hold `invoice` (a row) in the caller's transaction: a hold row, status held, a task for the owner with the
    mail linked, `invoice.held` on the timeline. None when this mail already held this invoice."""
    if kind not in KINDS:
        raise ValueError(f"unknown hold kind {kind!r}")
    owner = owner_of(conn, config, invoice.thirdparty_id)
    values = {"invoice_id": invoice.id, "kind": kind, "reason": reason, "message_id": message_id, "owner": owner,
              "status_before": invoice.status if invoice.status != HELD else "open", "until": until,
              "held_at": now}
    if message_id is not None:
        exists = conn.execute(select(_hold.c.id).where(_hold.c.invoice_id == invoice.id,
                                                       _hold.c.message_id == message_id)).first()
        if exists is not None:
            return None
    hold_id = int(conn.execute(insert(_hold).returning(_hold.c.id).values(**values)).scalar_one())
    conn.execute(update(_inv).where(_inv.c.id == invoice.id).values(status=HELD, updated_at=now))
    task_id = None
    if kind != "promise":
        who = owner or "nobody: set the third party's owner or dunning.hold_owner"
        task_id = create_task(conn, title=f"Invoice {invoice.ref} is held: {reason}",
                              thirdparty_id=invoice.thirdparty_id, owner=owner, due_at=now + timedelta(days=1),
                              invoice_id=invoice.id, message_id=message_id,
                              reason=f"dunning held ({kind}); resolve with `maild invoice resume|promise|dispute "
                                     f"{invoice.ref}` or record the payment; owner: {who}")
        conn.execute(update(_hold).where(_hold.c.id == hold_id).values(task_id=task_id))
    append_event(conn, "invoice.held", thirdparty_id=invoice.thirdparty_id, message_id=message_id, occurred_at=now,
                 data={"invoice_id": invoice.id, "ref": invoice.ref, "kind": kind, "reason": reason, "owner": owner,
                       "task_id": task_id, "hold_id": hold_id, "until": until.isoformat() if until else None})
    return hold_id


def active(conn: Connection, invoice_id: int) -> HoldState | None:
    """The newest unresolved hold of the invoice."""
    row = conn.execute(select(_hold).where(_hold.c.invoice_id == invoice_id, _hold.c.resolved_at.is_(None))
                       .order_by(_hold.c.id.desc())).first()
    if row is None:
        return None
    return HoldState(row.kind, row.reason, row.owner, as_utc(row.held_at) or row.held_at, _day(row.until),
                     row.message_id, row.task_id, as_utc(row.escalated_at))


def resolve(conn: Connection, invoice: Any, *, resolution: str, now: datetime, status: str | None = None) -> bool:
    """End the invoice's holds: status back to what it was (or `status`), `invoice.resumed`. False when none was
    active."""
    rows = conn.execute(select(_hold).where(_hold.c.invoice_id == invoice.id, _hold.c.resolved_at.is_(None))
                        .order_by(_hold.c.id)).all()
    if not rows:
        return False
    conn.execute(update(_hold).where(_hold.c.invoice_id == invoice.id, _hold.c.resolved_at.is_(None))
                 .values(resolved_at=now, resolution=resolution))
    back = status or rows[0].status_before or "open"
    if invoice.status == HELD:
        conn.execute(update(_inv).where(_inv.c.id == invoice.id, _inv.c.status == HELD)
                     .values(status=back, updated_at=now))
    append_event(conn, "invoice.resumed", thirdparty_id=invoice.thirdparty_id, occurred_at=now,
                 data={"invoice_id": invoice.id, "ref": invoice.ref, "resolution": resolution, "status": back})
    return True


def resume(conn: Connection, ref: str, now: datetime, *, by: str = "") -> bool:
    """`maild invoice resume REF`: dunning goes on (the level its age calls for)."""
    invoice = find_invoice(conn, ref)
    return resolve(conn, invoice, resolution=f"resumed{' by ' + by if by else ''}", now=now)


def promise(conn: Connection, config: Config, ref: str, until: date, now: datetime) -> int:
    """`maild invoice promise REF --until DATE`: the customer promised to pay by then; dunning waits until that
    day has passed, then goes on by itself (`release_promises`)."""
    invoice = find_invoice(conn, ref)
    if invoice.status not in ("open", HELD):
        raise ValueError(f"invoice {invoice.ref} is {invoice.status}: only an open or held invoice can wait for a "
                         "promise")
    if until < now.date():
        raise ValueError(f"the promised date {until.isoformat()} has passed")
    resolve(conn, invoice, resolution=f"payment promised by {until.isoformat()}", now=now)
    invoice = find_invoice(conn, ref)
    hold_id = hold(conn, config, invoice, kind="promise", reason=f"payment promised by {until.isoformat()}",
                   now=now, until=until)
    assert hold_id is not None
    append_event(conn, "invoice.promised", thirdparty_id=invoice.thirdparty_id, occurred_at=now,
                 data={"invoice_id": invoice.id, "ref": invoice.ref, "until": until.isoformat()})
    return hold_id


def dispute(conn: Connection, ref: str, reason: str, now: datetime) -> None:
    """`maild invoice dispute REF --reason ...`: status disputed (dunning stops), the reason on the timeline."""
    text = fields.text(reason, "the dispute's reason (--reason)", 2000, required=True)
    invoice = find_invoice(conn, ref)
    if invoice.status in ("paid", "cancelled"):
        raise ValueError(f"invoice {invoice.ref} is {invoice.status}: nothing to dispute")
    resolve(conn, invoice, resolution=f"disputed: {text}", now=now, status="disputed")
    conn.execute(update(_inv).where(_inv.c.id == invoice.id).values(status="disputed", updated_at=now))
    append_event(conn, "invoice.disputed", thirdparty_id=invoice.thirdparty_id, occurred_at=now,
                 data={"invoice_id": invoice.id, "ref": invoice.ref, "reason": text,
                       "previous_status": invoice.status})


def promises_released_by(conn: Connection, today: date) -> list[tuple[int, date]]:
    """(invoice id, promised date) of the promises `release_promises` would end on `today`."""
    rows = conn.execute(select(_hold.c.invoice_id, _hold.c.until).where(
        _hold.c.kind == "promise", _hold.c.resolved_at.is_(None), _hold.c.until < today)).all()
    return [(int(invoice_id), _day(until) or today) for invoice_id, until in rows]


def release_promises(conn: Connection, today: date, now: datetime) -> int:
    """Promises whose day has passed end: dunning goes on by itself. Returns how many."""
    rows = conn.execute(select(_hold.c.invoice_id).where(_hold.c.kind == "promise", _hold.c.resolved_at.is_(None),
                                                         _hold.c.until < today)).all()
    done = 0
    for (invoice_id,) in rows:
        invoice = conn.execute(select(_inv).where(_inv.c.id == invoice_id)).one()
        done += resolve(conn, invoice, resolution="the promised date passed without payment", now=now)
    return done


def escalate(conn: Connection, config: Config, now: datetime) -> int:
    """Holds nobody resolved within `dunning.hold_escalate_days` (promises excepted): a second task for the
    owner (or `dunning.hold_owner`), `invoice.hold_escalated`. Once per hold. Returns how many."""
    limit = now - timedelta(days=config.dunning.hold_escalate_days)
    rows = conn.execute(select(_hold).where(_hold.c.resolved_at.is_(None), _hold.c.escalated_at.is_(None),
                                            _hold.c.kind != "promise", _hold.c.held_at <= limit)).all()
    done = 0
    for row in rows:
        claimed = conn.execute(update(_hold).where(_hold.c.id == row.id, _hold.c.escalated_at.is_(None))
                               .values(escalated_at=now)).rowcount
        if not claimed:
            continue
        invoice = conn.execute(select(_inv).where(_inv.c.id == row.invoice_id)).one()
        owner = row.owner or config.dunning.hold_owner
        since = (as_utc(row.held_at) or row.held_at).date().isoformat()
        task_id = create_task(conn, title=f"Still held since {since}: invoice {invoice.ref} ({row.reason})",
                              thirdparty_id=invoice.thirdparty_id, owner=owner, due_at=now, invoice_id=invoice.id,
                              message_id=row.message_id,
                              reason=f"nobody resolved the hold within {config.dunning.hold_escalate_days} days")
        append_event(conn, "invoice.hold_escalated", thirdparty_id=invoice.thirdparty_id, occurred_at=now,
                     data={"invoice_id": invoice.id, "ref": invoice.ref, "hold_id": row.id, "owner": owner,
                           "task_id": task_id, "held_since": since, "reason": row.reason})
        done += 1
    return done


def _day(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value))
