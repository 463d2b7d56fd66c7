"""Import invoices, payments or meetings from a CSV file like maild.directory.csv_import: a column named like
a field feeds it (or --map COLUMN=FIELD), bad rows are reported by line, all rows are stored or none.

Re-running a file changes nothing: invoices upsert by ref, payments are unique per (invoice, reference),
meetings upsert by uid (a row without one gets a uid derived from its subject and start).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlmodel import Session

from maild.business import ENTITIES, fields, invoices, meetings
from maild.directory.csv_rows import ImportOptions, ImportReport, import_rows, map_columns, one_by_one
from maild.directory.fields import MULTI_SEPARATOR
from maild.directory.references import resolve_ids
from maild.store.db import Database

FIELDS: dict[str, tuple[str, ...]] = {
    "invoices": ("ref", "thirdparty", "issued_on", "due_on", "amount", "currency", "status"),
    "payments": ("invoice", "amount", "paid_on", "reference"),
    "meetings": ("uid", "subject", "start", "end", "thirdparty", "location", "attendees", "organizer", "owner",
                 "next_steps", "status"),
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "invoices": ("ref", "thirdparty", "issued_on", "due_on", "amount"),
    "payments": ("invoice", "amount", "paid_on"),
    "meetings": ("subject", "start", "end"),
}
Row = dict[str, str]


@dataclass(frozen=True)
class ImportSettings:
    own: meetings.OwnMail = field(default_factory=meetings.OwnMail)
    zone: str = "UTC"  # for meeting times without an offset (config.rules.timezone)


def import_csv(db: Database, entity: str, path: str | Path, mapping: Mapping[str, str] | None = None,
               delimiter: str = ",", settings: ImportSettings | None = None,
               options: ImportOptions | None = None) -> ImportReport:
    """Store every row of `path` in one transaction; bad rows are rejected with their line number (and then
    nothing is stored, unless `options.skip_invalid`), a bad file or header raises ValueError."""
    if entity not in ENTITIES:
        raise ValueError(f"unknown entity {entity!r}: use {', '.join(ENTITIES)}")
    store = _STORERS[entity]
    chosen = settings or ImportSettings()
    return import_rows(db, path, delimiter, lambda header: _columns(entity, header, dict(mapping or {}), path),
                       one_by_one(lambda session, row: store(session, row, chosen)), options or ImportOptions())


def _columns(entity: str, header: list[str], mapping: dict[str, str], path: str | Path) -> list[str | None]:
    known = FIELDS[entity]
    return map_columns(header, mapping, path, entity=entity, is_known=known.__contains__, choices=", ".join(known),
                       required=REQUIRED[entity])


def _multi(row: Row, name: str) -> list[str]:
    return [part.strip() for part in row.get(name, "").split(MULTI_SEPARATOR) if part.strip()]


def _thirdparty_id(session: Session, ref: str) -> int:
    found = resolve_ids(session.connection(), [ref], by_id=False)[ref]
    if isinstance(found, Exception):
        raise found
    return found


def _store_invoice(session: Session, row: Row, _settings: ImportSettings) -> bool:
    if not row.get("ref"):
        raise ValueError("invoice reference is missing")
    if not row.get("thirdparty"):
        raise ValueError("thirdparty is missing")
    _, created = invoices.upsert_invoice_in(
        session.connection(), ref=row["ref"], thirdparty_id=_thirdparty_id(session, row["thirdparty"]),
        issued_on=row.get("issued_on"), due_on=row.get("due_on"), amount=row.get("amount"),
        currency=row.get("currency"), status=row.get("status"))
    return created


def _store_payment(session: Session, row: Row, _settings: ImportSettings) -> bool:
    if not row.get("invoice"):
        raise ValueError("invoice is missing")
    result = invoices.record_payment_in(session.connection(), row["invoice"], amount=row.get("amount"),
                                        paid_on=row.get("paid_on", ""), reference=row.get("reference"))
    return result.created  # the same payment again counts as updated (and changes nothing)


def _store_meeting(session: Session, row: Row, settings: ImportSettings) -> bool:
    subject = row.get("subject", "")
    start = fields.moment(row.get("start"), "start", settings.zone)
    end = fields.moment(row.get("end"), "end", settings.zone)
    uid = row.get("uid") or "import-" + hashlib.sha256(f"{subject}\n{start.isoformat()}".encode()).hexdigest()[:32]
    people = [meetings.parse_attendee(a) for a in _multi(row, "attendees")]
    status = (row.get("status") or "confirmed").lower()
    named_tp = _thirdparty_id(session, row["thirdparty"]) if row.get("thirdparty") else None
    conn = session.connection()
    attendees = meetings.resolve_attendees(conn, people, settings.own)
    tp_id = named_tp if named_tp is not None else meetings.external_thirdparty(attendees)
    organizer = meetings.parse_attendee(row["organizer"])[1] if row.get("organizer") else None
    change = meetings.upsert_meeting_in(
        conn, uid=uid, subject=subject, start_at=start, end_at=end, thirdparty_id=tp_id,
        location=row.get("location"), attendees=attendees, organizer=organizer, owner=row.get("owner"),
        next_steps=_multi(row, "next_steps"), status=status, force=True)
    return change.action == "created"


_STORERS: dict[str, Callable[[Session, Row, ImportSettings], bool]] = {
    "invoices": _store_invoice,
    "payments": _store_payment,
    "meetings": _store_meeting,
}
