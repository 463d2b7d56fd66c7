"""Invoices for people: open and overdue ones with their dunning state; recording a payment (audited)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection

from maild.business import holds
from maild.business import invoices as inv
from maild.services import audit
from maild.services.actor import Actor
from maild.store.db import Database


def listing(db: Database, *, status: str | None = "open", overdue: bool = False,
            thirdparty_id: int | None = None) -> list[dict[str, Any]]:
    return inv.list_invoices(db, status=status, overdue=overdue, thirdparty_id=thirdparty_id)


def record_payment(db: Database, actor: Actor, ref: str, *, amount: str, paid_on: date | str,
                   reference: str = "") -> inv.PaymentResult:
    """Record a payment of `amount` on invoice `ref` (once per reference); ValueError for a bad amount or date,
    LookupError for an unknown invoice."""
    actor.require("staff")
    with db.engine.begin() as conn:
        row = inv.find_invoice(conn, ref)
        before = {"status": row.status, "paid_amount": str(row.paid_amount)}
        result = inv.record_payment_in(conn, ref, amount=str(amount).strip(), paid_on=paid_on,
                                       reference=reference or None)
        if result.created:
            audit.record(conn, actor, "invoice.payment", f"invoice:{row.id}", before=before,
                         after={"status": result.status, "paid_amount": str(result.paid_amount),
                                "payment": {"amount": str(amount), "paid_on": str(paid_on), "reference": reference}})
    return result


_SHOWN = ("ref", "thirdparty_id", "contact_id", "issued_on", "due_on", "amount", "paid_amount", "currency", "status",
          "lines")


def upsert(db: Database, actor: Actor, *, ref: str, thirdparty_id: int, issued_on: date | str | None = None,
           due_on: date | str | None = None, amount: Any = None, currency: str | None = None,
           contact_id: int | None = None, lines: Iterable[Mapping[str, Any]] | None = None,
           status: str | None = None) -> tuple[int, bool]:
    """Add invoice `ref` or update it (maild.business.invoices.upsert_invoice): (id, created); audited as
    `invoice.create` or `invoice.update` with the invoice before and after."""
    actor.require("staff")
    with db.engine.begin() as conn:
        before = _snapshot(conn, ref)
        invoice_id, created = inv.upsert_invoice_in(conn, ref=ref, thirdparty_id=thirdparty_id, issued_on=issued_on,
                                                    due_on=due_on, amount=amount, currency=currency,
                                                    contact_id=contact_id, lines=lines, status=status)
        audit.record(conn, actor, "invoice.create" if created else "invoice.update", f"invoice:{invoice_id}",
                     before=before, after=_snapshot(conn, f"#{invoice_id}"))
    return invoice_id, created


def set_status(db: Database, actor: Actor, ref: str, status: str) -> bool:
    """Set an invoice's status (maild.business.invoices.set_status); audited when it changed."""
    return _audited(db, actor, ref, "invoice.status", lambda conn: inv.set_status_in(conn, ref, status))


def resume(db: Database, actor: Actor, ref: str, now: datetime) -> bool:
    """End the hold on an invoice (maild.business.holds.resume); audited when there was one."""
    return _audited(db, actor, ref, "invoice.resume", lambda conn: holds.resume(conn, ref, now))


def promise(db: Database, actor: Actor, config: Any, ref: str, until: date, now: datetime) -> None:
    """The customer promised to pay by `until` (maild.business.holds.promise); audited."""
    _audited(db, actor, ref, "invoice.promise", lambda conn: holds.promise(conn, config, ref, until, now) or True,
             extra={"promised_until": until.isoformat()})


def dispute(db: Database, actor: Actor, ref: str, reason: str, now: datetime) -> None:
    """The invoice is disputed (maild.business.holds.dispute); audited with the reason."""
    _audited(db, actor, ref, "invoice.dispute", lambda conn: holds.dispute(conn, ref, reason, now) or True,
             extra={"reason": reason})


def _audited(db: Database, actor: Actor, ref: str, action: str, change: Callable[[Connection], Any],
             extra: dict[str, Any] | None = None) -> bool:
    actor.require("staff")
    with db.engine.begin() as conn:
        before = _snapshot(conn, ref)
        changed = bool(change(conn))
        if changed and before is not None:
            audit.record(conn, actor, action, f"invoice:{inv.find_invoice(conn, ref).id}", before=before,
                         after={**(_snapshot(conn, ref) or {}), **(extra or {})})
    return changed


def _snapshot(conn: Connection, ref: str) -> dict[str, Any] | None:
    try:
        row = inv.find_invoice(conn, ref)
    except LookupError:
        return None
    if not str(ref).startswith("#") and row.ref != str(ref).strip():
        return None  # find_invoice also finds by id: a new ref that looks like one is not that invoice
    return {name: getattr(row, name, None) for name in _SHOWN}
