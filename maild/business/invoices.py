"""Invoices and their payments: upsert by ref, list, describe, pay, set status; `invoice_context` for templates.

Writes append to the timeline: `invoice.created`, `invoice.updated` (status or amounts changed),
`invoice.paid` (each time it becomes paid), `payment.recorded`. The status follows the payments: covered
-> paid; a paid invoice whose amount is raised above its payments -> open again. Every invoice also has a
`documents` row (kind invoice) so the reference matcher recognises its number in mail.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, select, update

from maild.business import fields as bf
from maild.business.timeline import append_event
from maild.clock import as_utc, utcnow
from maild.directory import fields
from maild.store.db import Database
from maild.store.models import Contact, Document, Invoice, InvoiceHold, Payment, ThirdParty

_inv, _pay, _doc = Invoice.__table__, Payment.__table__, Document.__table__
_tp, _contact, _holds = ThirdParty.__table__, Contact.__table__, InvoiceHold.__table__
ZERO = Decimal("0.00")


@dataclass(frozen=True)
class PaymentResult:
    payment_id: int | None  # None: this (invoice, reference) was recorded before, nothing changed
    created: bool
    invoice_id: int
    ref: str
    paid_amount: Decimal
    amount_due: Decimal
    status: str
    became_paid: bool


# --- the template/rule view --------------------------------------------------------------------


def invoice_context(conn: Connection | None, invoice: Any) -> dict[str, Any]:
    """The template and rule view of an invoice (a row, a mapping, an Invoice or its id).

    Keys: id, ref, thirdparty_id, contact_id, date (= issued_on), issued_on, due_on, due_date, currency,
    amount, paid_amount, amount_paid, late_fees, amount_due (amount - paid + late fees), total, total_net,
    total_vat (from the lines when there are any; else total = amount, net = amount, VAT 0), lines (each with
    description, quantity, unit, unit_price, vat_rate, total as Decimal), status, dunning_level,
    dunning_repeats, last_dunned_at, paid_at. `due_date` and `amount_paid` are the names the sample
    templates use (maild/templates/sample.py). `conn` is only used for an id (None will do for a row).
    """
    if isinstance(invoice, int):
        if conn is None:
            raise TypeError("invoice_context needs a connection to load an invoice by id")
        row = _load(conn, invoice)
    else:
        row = invoice
    get = _getter(row)
    amount = Decimal(get("amount"))
    paid = Decimal(get("paid_amount") or 0)
    fees = Decimal(get("late_fees") or 0)
    lines = [_line_view(line) for line in get("lines") or []]
    if lines:
        net = sum((line["total"] for line in lines), ZERO)
        vat = sum((line["total"] * line["vat_rate"] / 100 for line in lines), ZERO).quantize(bf.CENT)
        total = net + vat
    else:
        net, vat, total = amount, ZERO, amount
    issued, due = _as_date(get("issued_on")), _as_date(get("due_on"))
    return {
        "id": get("id"), "ref": get("ref"), "thirdparty_id": get("thirdparty_id"), "contact_id": get("contact_id"),
        "date": issued, "issued_on": issued, "due_on": due, "due_date": due, "currency": get("currency"),
        "amount": amount, "paid_amount": paid, "amount_paid": paid, "late_fees": fees,
        "amount_due": amount - paid + fees, "total": total, "total_net": net, "total_vat": vat, "lines": lines,
        "status": get("status"), "dunning_level": get("dunning_level") or 0,
        "dunning_repeats": get("dunning_repeats") or 0, "last_dunned_at": as_utc(get("last_dunned_at")),
        "paid_at": as_utc(get("paid_at")),
    }


def find_invoice(conn: Connection, ref: str) -> Any:
    """The invoice row with this ref; or, for `#12` or a number that is no ref, the one with that id."""
    return bf.find_row(conn, _inv, _inv.c.ref, ref, "invoice")


# --- writing -----------------------------------------------------------------------------------


def parse_lines(lines: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Line items as stored (decimals as strings): description, quantity, unit, unit_price, vat_rate, total."""
    out = []
    for number, line in enumerate(lines, start=1):
        what = f"line {number}"
        description = fields.text(str(line.get("description") or ""), f"{what}: description", 1000, required=True)
        quantity = bf.number(line.get("quantity", 1), f"{what}: quantity")
        unit_price = bf.amount(line.get("unit_price"), f"{what}: unit price")
        vat_rate = bf.number(line.get("vat_rate", 0), f"{what}: VAT rate")
        if vat_rate > 100:
            raise ValueError(f"{what}: VAT rate {vat_rate} is more than 100 (give percent, such as 19)")
        total = (quantity * unit_price).quantize(bf.CENT)
        out.append({"description": description, "quantity": str(quantity), "unit": str(line.get("unit") or ""),
                    "unit_price": str(unit_price), "vat_rate": str(vat_rate), "total": str(total)})
    return out


def upsert_invoice(db: Database, *, ref: str, thirdparty_id: int, issued_on: date | str | None = None,
                   due_on: date | str | None = None, amount: Any = None, currency: str | None = None,
                   contact_id: int | None = None, lines: Iterable[Mapping[str, Any]] | None = None,
                   status: str | None = None) -> tuple[int, bool]:
    """Insert the invoice `ref`, or update it. Returns (id, created).

    A new invoice needs issued_on, due_on and an amount (or lines, whose total is then the amount). On update
    None leaves a field as it is. With lines and an amount both given, they must agree.
    """
    clean_ref = fields.text(ref, "invoice reference", 100, required=True)
    assert clean_ref is not None
    with db.engine.begin() as conn:
        return upsert_invoice_in(conn, ref=clean_ref, thirdparty_id=thirdparty_id, issued_on=issued_on,
                                 due_on=due_on, amount=amount, currency=currency, contact_id=contact_id,
                                 lines=lines, status=status)


def upsert_invoice_in(conn: Connection, *, ref: str, thirdparty_id: int, issued_on: date | str | None = None,
                      due_on: date | str | None = None, amount: Any = None, currency: str | None = None,
                      contact_id: int | None = None, lines: Iterable[Mapping[str, Any]] | None = None,
                      status: str | None = None) -> tuple[int, bool]:
    """`upsert_invoice` in the caller's transaction."""
    clean_ref = fields.text(ref, "invoice reference", 100, required=True)
    changes = _changes(issued_on=issued_on, due_on=due_on, amount=amount, currency=currency, lines=lines,
                       status=status)
    if conn.execute(select(_tp.c.id).where(_tp.c.id == thirdparty_id)).first() is None:
        raise LookupError(f"no third party with id {thirdparty_id}")
    if contact_id is not None:
        owner = conn.execute(select(_contact.c.thirdparty_id).where(_contact.c.id == contact_id)).scalar()
        if owner is None:
            raise LookupError(f"no contact with id {contact_id}")
        if owner != thirdparty_id:
            raise ValueError(f"contact {contact_id} belongs to another third party")
        changes["contact_id"] = contact_id
    existing = conn.execute(select(_inv).where(_inv.c.ref == clean_ref)).first()
    if existing is None:
        return _create(conn, clean_ref, thirdparty_id, changes), True
    return _update(conn, existing, thirdparty_id, changes), False


def record_payment(db: Database, invoice_ref: str, *, amount: Any, paid_on: date | str,
                   reference: str | None = None) -> PaymentResult:
    """Record a payment once per (invoice, reference); no reference: `AMOUNT@DATE` is the reference, so the
    same import run twice pays once. Fully paid: status paid, paid_at, `invoice.paid`."""
    with db.engine.begin() as conn:
        return record_payment_in(conn, invoice_ref, amount=amount, paid_on=paid_on, reference=reference)


def record_payment_in(conn: Connection, invoice_ref: str, *, amount: Any, paid_on: date | str,
                      reference: str | None = None) -> PaymentResult:
    value = bf.amount(amount, "payment amount", allow_zero=False)
    day = bf.day(paid_on, "payment date")
    ref_text = fields.text(reference, "payment reference", 200) or f"{value}@{day.isoformat()}"
    row = find_invoice(conn, invoice_ref)
    if row.status == "cancelled":
        raise ValueError(f"invoice {row.ref} is cancelled: no payment recorded")
    payment_id = conn.execute(_insert_ignore(conn, _pay).returning(_pay.c.id).values(
        invoice_id=row.id, amount=value, paid_on=day, reference=ref_text, created_at=utcnow())).scalar()
    if payment_id is None:
        current = _load(conn, row.id)
        ctx = invoice_context(conn, current)
        return PaymentResult(None, False, row.id, row.ref, ctx["paid_amount"], ctx["amount_due"], current.status,
                             False)
    conn.execute(update(_inv).where(_inv.c.id == row.id)
                 .values(paid_amount=_inv.c.paid_amount + value, updated_at=utcnow()))
    append_event(conn, "payment.recorded", thirdparty_id=row.thirdparty_id,
                 data={"invoice_id": row.id, "ref": row.ref, "payment_id": payment_id, "amount": str(value),
                       "currency": row.currency, "paid_on": day.isoformat(), "reference": ref_text})
    became_paid = _settle(conn, row.id)
    current = _load(conn, row.id)
    ctx = invoice_context(conn, current)
    return PaymentResult(payment_id, True, row.id, row.ref, ctx["paid_amount"], ctx["amount_due"], current.status,
                         became_paid)


def set_status(db: Database, invoice_ref: str, status: str) -> bool:
    """Set open/paid/disputed/paused/cancelled; False when it already had that status."""
    with db.engine.begin() as conn:
        return set_status_in(conn, invoice_ref, status)


def set_status_in(conn: Connection, invoice_ref: str, status: str, *, reason: str = "") -> bool:
    wanted = bf.invoice_status(status)
    row = find_invoice(conn, invoice_ref)
    return _change_status(conn, row, wanted, reason=reason)


# --- reading -----------------------------------------------------------------------------------


def list_invoices(db: Database, *, status: str | None = None, overdue: bool = False,
                  thirdparty_id: int | None = None, today: date | None = None) -> list[dict[str, Any]]:
    """Invoices by due date; overdue = open, past its due date (before `today`) and not fully paid."""
    query = (select(_inv, _tp.c.name.label("thirdparty_name")).join(_tp, _tp.c.id == _inv.c.thirdparty_id)
             .order_by(_inv.c.due_on, _inv.c.id))
    if status:
        wanted = "held" if status.strip().lower() == "held" else bf.invoice_status(status)  # held: only by a hold
        query = query.where(_inv.c.status == wanted)
    if thirdparty_id is not None:
        query = query.where(_inv.c.thirdparty_id == thirdparty_id)
    if overdue:
        query = query.where(_inv.c.status == "open", _inv.c.due_on < (today or utcnow().date()))
    with db.engine.connect() as conn:
        rows = conn.execute(query).all()
        out = []
        for row in rows:
            ctx = invoice_context(conn, row)
            if overdue and ctx["amount_due"] <= 0:
                continue
            out.append({**ctx, "thirdparty_name": row.thirdparty_name})
    return out


def describe_invoice(db: Database, invoice_ref: str) -> dict[str, Any]:
    """The invoice's context plus its third party's name and its payments (oldest first)."""
    with db.engine.connect() as conn:
        row = find_invoice(conn, invoice_ref)
        ctx = invoice_context(conn, row)
        name = conn.execute(select(_tp.c.name).where(_tp.c.id == row.thirdparty_id)).scalar()
        payments = conn.execute(select(_pay).where(_pay.c.invoice_id == row.id)
                                .order_by(_pay.c.paid_on, _pay.c.id)).all()
    return {**ctx, "thirdparty_name": name, "created_at": as_utc(row.created_at),
            "updated_at": as_utc(row.updated_at),
            "payments": [{"id": p.id, "amount": Decimal(p.amount), "paid_on": _as_date(p.paid_on),
                          "reference": p.reference} for p in payments]}


# --- helpers -----------------------------------------------------------------------------------


def _changes(*, issued_on: Any, due_on: Any, amount: Any, currency: str | None,
             lines: Iterable[Mapping[str, Any]] | None, status: str | None) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if issued_on is not None and str(issued_on).strip():
        changes["issued_on"] = bf.day(issued_on, "invoice date")
    if due_on is not None and str(due_on).strip():
        changes["due_on"] = bf.day(due_on, "due date")
    if currency is not None and currency.strip():
        changes["currency"] = bf.currency(currency)
    if status is not None and status.strip():
        changes["status"] = bf.invoice_status(status)
    if lines is not None:
        changes["lines"] = parse_lines(lines)
    if amount is not None and str(amount).strip():
        changes["amount"] = bf.amount(amount, "invoice amount")
    if changes.get("lines"):
        lines_total = invoice_context_totals(changes["lines"])
        if "amount" not in changes:
            changes["amount"] = lines_total
        elif changes["amount"] != lines_total:
            raise ValueError(f"amount {changes['amount']} does not match the total of the lines ({lines_total})")
    return changes


def invoice_context_totals(lines: list[dict[str, Any]]) -> Decimal:
    """Net plus VAT of stored lines, as invoice_context computes it."""
    views = [_line_view(line) for line in lines]
    net = sum((v["total"] for v in views), ZERO)
    return net + sum((v["total"] * v["vat_rate"] / 100 for v in views), ZERO).quantize(bf.CENT)


def _create(conn: Connection, ref: str, thirdparty_id: int, changes: dict[str, Any]) -> int:
    for key, what in (("issued_on", "invoice date"), ("due_on", "due date"), ("amount", "amount")):
        if key not in changes:
            raise ValueError(f"a new invoice needs its {what}")
    if changes["due_on"] < changes["issued_on"]:
        raise ValueError(f"due date {changes['due_on']} is before the invoice date {changes['issued_on']}")
    now = utcnow()
    status = changes.pop("status", "open")
    values = {"currency": "EUR", "lines": [], **changes}
    invoice_id = int(conn.execute(_inv.insert().returning(_inv.c.id).values(
        ref=ref, thirdparty_id=thirdparty_id, status=status, paid_amount=ZERO, late_fees=ZERO,
        dunning_level=0, dunning_repeats=0, created_at=now, updated_at=now,
        paid_at=now if status == "paid" else None, **values)).scalar_one())
    _document(conn, ref, thirdparty_id)
    append_event(conn, "invoice.created", thirdparty_id=thirdparty_id, occurred_at=now, data={
        "invoice_id": invoice_id, "ref": ref, "amount": str(values["amount"]), "currency": values["currency"],
        "due_on": values["due_on"].isoformat()})
    if status == "paid":
        append_event(conn, "invoice.paid", thirdparty_id=thirdparty_id, occurred_at=now,
                     data={"invoice_id": invoice_id, "ref": ref, "paid_at": now.isoformat()})
    return invoice_id


def _update(conn: Connection, row: Any, thirdparty_id: int, changes: dict[str, Any]) -> int:
    status = changes.pop("status", None)
    if thirdparty_id != row.thirdparty_id:
        changes["thirdparty_id"] = thirdparty_id
    diff = {key: value for key, value in changes.items() if _differs(getattr(row, key), value)}
    issued = diff.get("issued_on", _as_date(row.issued_on))
    due = diff.get("due_on", _as_date(row.due_on))
    if due < issued:
        raise ValueError(f"due date {due} is before the invoice date {issued}")
    if diff:
        conn.execute(update(_inv).where(_inv.c.id == row.id).values(**diff, updated_at=utcnow()))
        if "thirdparty_id" in diff:
            _document(conn, row.ref, thirdparty_id)
        append_event(conn, "invoice.updated", thirdparty_id=thirdparty_id, data={
            "invoice_id": row.id, "ref": row.ref, "changes": {key: _jsonable(value) for key, value in diff.items()}})
    current = _load(conn, row.id)
    if status is not None:
        _change_status(conn, current, status)
    elif "amount" in diff and not _settle(conn, row.id) and _covered(conn, row) and not _covered(conn, current):
        # paid because the payments covered it, and now they do not: due again (not when paid by decision)
        _change_status(conn, current, "open", reason="amount raised above the payments")
    return int(row.id)


def _covered(conn: Connection, row: Any) -> bool:
    """Paid, and the recorded payments cover the amount (with late fees)."""
    return bool(row.status == "paid" and invoice_context(conn, row)["amount_due"] <= 0)


def _change_status(conn: Connection, row: Any, status: str, *, reason: str = "") -> bool:
    if row.status == status:
        return False
    now = utcnow()
    values: dict[str, Any] = {"status": status, "updated_at": now, "paid_at": now if status == "paid" else None}
    changed = conn.execute(update(_inv).where(_inv.c.id == row.id, _inv.c.status == row.status)
                           .values(**values)).rowcount
    if not changed:  # someone else changed it meanwhile: theirs stands
        return False
    if row.status == "held":  # a person (or a payment) decided: the holds end (maild.business.holds)
        conn.execute(update(_holds).where(_holds.c.invoice_id == row.id, _holds.c.resolved_at.is_(None))
                     .values(resolved_at=now, resolution=f"invoice {status}" + (f": {reason}" if reason else "")))
    data: dict[str, Any] = {"invoice_id": row.id, "ref": row.ref, "status": status, "previous_status": row.status}
    if reason:
        data["reason"] = reason
    append_event(conn, "invoice.updated", thirdparty_id=row.thirdparty_id, occurred_at=now, data=data)
    if status == "paid":
        append_event(conn, "invoice.paid", thirdparty_id=row.thirdparty_id, occurred_at=now,
                     data={"invoice_id": row.id, "ref": row.ref, "paid_at": now.isoformat()})
    return True


def _settle(conn: Connection, invoice_id: int) -> bool:
    """An open (or paused/disputed) invoice whose amount due is covered becomes paid. True when it did."""
    row = _load(conn, invoice_id)
    if row.status in ("paid", "cancelled"):
        return False
    if invoice_context(conn, row)["amount_due"] > 0:
        return False
    return _change_status(conn, row, "paid", reason="fully paid")


def _document(conn: Connection, ref: str, thirdparty_id: int) -> None:
    found = conn.execute(select(_doc.c.id).where(_doc.c.ref == ref, _doc.c.kind == "invoice")).scalar()
    if found is None:
        conn.execute(_doc.insert().values(ref=ref, kind="invoice", thirdparty_id=thirdparty_id))
    else:
        conn.execute(update(_doc).where(_doc.c.id == found).values(thirdparty_id=thirdparty_id))


def _insert_ignore(conn: Connection, table: Any) -> Any:
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    insert = sqlite_insert if conn.dialect.name == "sqlite" else pg_insert
    return insert(table).on_conflict_do_nothing()


def _load(conn: Connection, invoice_id: int) -> Any:
    row = conn.execute(select(_inv).where(_inv.c.id == invoice_id)).first()
    if row is None:
        raise LookupError(f"no invoice with id {invoice_id}")
    return row


def _getter(row: Any) -> Any:
    if isinstance(row, Mapping):
        return row.get
    mapping = getattr(row, "_mapping", None)
    if mapping is not None:
        return mapping.get
    return lambda key: getattr(row, key, None)


def _line_view(line: Mapping[str, Any]) -> dict[str, Any]:
    quantity = Decimal(str(line.get("quantity", 1)))
    unit_price = Decimal(str(line.get("unit_price", 0)))
    total = line.get("total")
    return {"description": line.get("description", ""), "quantity": quantity, "unit": line.get("unit") or "",
            "unit_price": unit_price, "vat_rate": Decimal(str(line.get("vat_rate", 0))),
            "total": Decimal(str(total)) if total is not None else (quantity * unit_price).quantize(bf.CENT)}


def _as_date(value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _differs(old: Any, new: Any) -> bool:
    if isinstance(new, Decimal):
        return old is None or Decimal(old) != new
    if isinstance(new, date):
        return _as_date(old) != new
    return bool(old != new)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    return value
