"""Invoices for people: open and overdue ones with their dunning state; recording a payment (audited)."""

from __future__ import annotations

from datetime import date
from typing import Any

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
        result = inv.record_payment_in(conn, ref, amount=str(amount).strip().replace(",", "."), paid_on=paid_on,
                                       reference=reference or None)
        if result.created:
            audit.record(conn, actor, "invoice.payment", f"invoice:{row.id}", before=before,
                         after={"status": result.status, "paid_amount": str(result.paid_amount),
                                "payment": {"amount": str(amount), "paid_on": str(paid_on), "reference": reference}})
    return result
