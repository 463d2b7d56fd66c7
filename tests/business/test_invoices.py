from __future__ import annotations

import warnings
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from maild.business import invoices
from maild.store.db import Database
from maild.store.models import Document
from maild.templates.loader import find
from maild.templates.render import render
from maild.templates.sample import sample_context
from tests.business.helpers import customer, events

SAMPLES = Path(invoices.__file__).resolve().parents[1] / "samples" / "templates"
LINES = [{"description": "Wartung Q4", "quantity": "1", "unit": "pcs", "unit_price": "1200.00", "vat_rate": "19"},
         {"description": "Vor-Ort, Stunden", "quantity": "3.5", "unit": "h", "unit_price": "95", "vat_rate": "19"}]


def test_upsert_creates_invoice_document_and_event_once(db: Database) -> None:
    tp = customer(db)
    inv_id, created = invoices.upsert_invoice(db, ref="FA2611-0007", thirdparty_id=tp, issued_on="2026-11-03",
                                              due_on="2026-11-17", amount="1.234,50", currency="eur")
    assert created
    again, created = invoices.upsert_invoice(db, ref="FA2611-0007", thirdparty_id=tp, amount="1234.50")
    assert (again, created) == (inv_id, False)
    [event] = events(db, "invoice.created")
    assert event.data == {"invoice_id": inv_id, "ref": "FA2611-0007", "amount": "1234.50", "currency": "EUR",
                          "due_on": "2026-11-17"}
    assert events(db, "invoice.updated") == []  # nothing changed
    with db.engine.connect() as conn:
        doc = conn.execute(select(Document.__table__).where(Document.__table__.c.ref == "FA2611-0007")).one()
    assert doc.kind == "invoice" and doc.thirdparty_id == tp


def test_context_from_lines_keeps_the_sample_keys(db: Database) -> None:
    tp = customer(db)
    inv_id, _ = invoices.upsert_invoice(db, ref="FA-1", thirdparty_id=tp, issued_on=date(2026, 11, 3),
                                        due_on=date(2026, 11, 17), lines=LINES)
    with db.engine.connect() as conn:
        ctx = invoices.invoice_context(conn, inv_id)
    assert ctx["total_net"] == Decimal("1532.50") and ctx["total_vat"] == Decimal("291.18")
    assert ctx["total"] == ctx["amount"] == ctx["amount_due"] == Decimal("1823.68")
    assert ctx["lines"][1]["total"] == Decimal("332.50") and ctx["lines"][1]["quantity"] == Decimal("3.5")
    assert ctx["date"] == ctx["issued_on"] == date(2026, 11, 3) and ctx["due_date"] == date(2026, 11, 17)
    missing = set(sample_context()["invoice"]) - set(ctx)
    assert not missing, missing
    with pytest.raises(ValueError, match="does not match the total of the lines"):
        invoices.upsert_invoice(db, ref="FA-2", thirdparty_id=tp, issued_on="2026-11-03", due_on="2026-11-17",
                                lines=LINES, amount="100")


def test_sample_templates_render_with_a_real_invoice(db: Database) -> None:
    tp = customer(db)
    inv_id, _ = invoices.upsert_invoice(db, ref="FA-1", thirdparty_id=tp, issued_on="2026-11-03",
                                        due_on="2026-11-17", amount="500")
    with db.engine.connect() as conn:
        ctx = invoices.invoice_context(conn, inv_id)
    context = {**sample_context(), "invoice": ctx}
    rendered = render(find(SAMPLES, "invoice", "en", "en"), context)
    assert "Total (incl. VAT): €500.00" in rendered.text
    assert "November 17, 2026" in rendered.text


@pytest.mark.parametrize("amount, message", [("-5", "must not be negative"), ("abc", "not an amount"),
                                             ("1.234", "more than two decimals"), ("NaN", "not an amount")])
def test_bad_amounts_are_rejected(db: Database, amount: str, message: str) -> None:
    tp = customer(db)
    with pytest.raises(ValueError, match=message):
        invoices.upsert_invoice(db, ref="X", thirdparty_id=tp, issued_on="2026-01-01", due_on="2026-01-31",
                                amount=amount)


def test_new_invoice_needs_dates_and_a_sane_due_date(db: Database) -> None:
    tp = customer(db)
    with pytest.raises(ValueError, match="needs its due date"):
        invoices.upsert_invoice(db, ref="X", thirdparty_id=tp, issued_on="2026-01-01", amount="1")
    with pytest.raises(ValueError, match="before the invoice date"):
        invoices.upsert_invoice(db, ref="X", thirdparty_id=tp, issued_on="2026-02-01", due_on="2026-01-01",
                                amount="1")
    with pytest.raises(ValueError, match="not a date"):
        invoices.upsert_invoice(db, ref="X", thirdparty_id=tp, issued_on="1.2.2026", due_on="2026-01-01",
                                amount="1")
    with pytest.raises(LookupError):
        invoices.upsert_invoice(db, ref="X", thirdparty_id=tp + 9, issued_on="2026-01-01", due_on="2026-01-02",
                                amount="1")


def test_payments_are_recorded_once_and_settle_the_invoice(db: Database) -> None:
    tp = customer(db)
    invoices.upsert_invoice(db, ref="FA-1", thirdparty_id=tp, issued_on="2026-11-03", due_on="2026-11-17",
                            amount="100.10")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Decimal-on-SQLite warnings: amounts stay exact
        first = invoices.record_payment(db, "FA-1", amount="60.05", paid_on="2026-11-10", reference="BANK-1")
    assert first.created and first.status == "open" and first.amount_due == Decimal("40.05")
    replay = invoices.record_payment(db, "FA-1", amount="60.05", paid_on="2026-11-10", reference="BANK-1")
    assert not replay.created and replay.paid_amount == Decimal("60.05")
    second = invoices.record_payment(db, "FA-1", amount="40.05", paid_on="2026-11-12", reference="BANK-2")
    assert second.became_paid and second.status == "paid" and second.amount_due == Decimal("0.00")
    [paid] = events(db, "invoice.paid")
    assert paid.data["ref"] == "FA-1" and paid.data["paid_at"]
    assert len(events(db, "payment.recorded")) == 2
    data = invoices.describe_invoice(db, "FA-1")
    assert data["paid_at"] is not None and [p["reference"] for p in data["payments"]] == ["BANK-1", "BANK-2"]
    invoices.record_payment(db, "FA-1", amount="1", paid_on="2026-11-13", reference="BANK-3")  # overpaid
    assert len(events(db, "invoice.paid")) == 1


def test_a_paid_invoice_whose_amount_is_raised_above_its_payments_is_due_again(db: Database) -> None:
    tp = customer(db)
    invoices.upsert_invoice(db, ref="FA-1", thirdparty_id=tp, issued_on="2026-11-03", due_on="2026-11-17",
                            amount="100.00")
    assert invoices.record_payment(db, "FA-1", amount="100", paid_on="2026-11-10", reference="B-1").became_paid
    invoices.upsert_invoice(db, ref="FA-1", thirdparty_id=tp, amount="90.00")  # lowered: still paid
    assert invoices.describe_invoice(db, "FA-1")["status"] == "paid"
    invoices.upsert_invoice(db, ref="FA-1", thirdparty_id=tp, amount="150.00")
    data = invoices.describe_invoice(db, "FA-1")
    assert data["status"] == "open" and data["amount_due"] == Decimal("50.00") and data["paid_at"] is None
    reopened = events(db, "invoice.updated")[-1]
    assert reopened.data["status"] == "open" and reopened.data["reason"] == "amount raised above the payments"
    assert invoices.record_payment(db, "FA-1", amount="50", paid_on="2026-11-20", reference="B-2").became_paid
    # paid by decision (no payments cover it): a raised amount does not reopen it
    invoices.upsert_invoice(db, ref="FA-2", thirdparty_id=tp, issued_on="2026-11-03", due_on="2026-11-17",
                            amount="10.00")
    invoices.set_status(db, "FA-2", "paid")
    invoices.upsert_invoice(db, ref="FA-2", thirdparty_id=tp, amount="20.00")
    assert invoices.describe_invoice(db, "FA-2")["status"] == "paid"


def test_status_changes_and_listing(db: Database) -> None:
    tp = customer(db)
    other = customer(db, name="Other", external_id="C-2")
    invoices.upsert_invoice(db, ref="A", thirdparty_id=tp, issued_on="2026-10-01", due_on="2026-10-15", amount="10")
    invoices.upsert_invoice(db, ref="B", thirdparty_id=other, issued_on="2026-11-01", due_on="2026-12-15",
                            amount="20")
    invoices.upsert_invoice(db, ref="C", thirdparty_id=tp, issued_on="2026-10-01", due_on="2026-10-20", amount="30")
    assert invoices.set_status(db, "C", "disputed") is True
    assert invoices.set_status(db, "C", "disputed") is False
    [updated] = events(db, "invoice.updated")
    assert updated.data == {"invoice_id": 3, "ref": "C", "status": "disputed", "previous_status": "open"}
    overdue = invoices.list_invoices(db, overdue=True, today=date(2026, 11, 1))
    assert [i["ref"] for i in overdue] == ["A"]
    assert [i["ref"] for i in invoices.list_invoices(db, thirdparty_id=other)] == ["B"]
    assert [i["ref"] for i in invoices.list_invoices(db, status="disputed")] == ["C"]
    with pytest.raises(ValueError, match="unknown invoice status"):
        invoices.set_status(db, "A", "gone")
    invoices.set_status(db, "A", "cancelled")
    with pytest.raises(ValueError, match="cancelled"):
        invoices.record_payment(db, "A", amount="10", paid_on="2026-11-01")
    with pytest.raises(LookupError, match="no invoice 'Z'"):
        invoices.describe_invoice(db, "Z")
