"""Export the directory as CSV (the columns `import_csv` reads back; formula cells neutralised) or JSON."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from sqlmodel import Session, col, select

from maild.directory.csv_formulas import neutralise
from maild.directory.csv_import import CUSTOM_PREFIX, ENTITIES, FIELDS
from maild.directory.fields import MULTI_SEPARATOR
from maild.directory.postal import PERSON, POSTAL
from maild.store.db import Database
from maild.store.models import Contact, Document, MailAddress, MailDomain, ThirdParty

FORMATS = ("csv", "json")


def export(db: Database, entity: str, fmt: str = "csv", *, raw: bool = False) -> str:
    """All records of `entity` (thirdparties, contacts, documents), in insertion order. In CSV a cell that a
    spreadsheet would run as a formula (=, +, -, @, tab, CR first) gets a ' in front, unless `raw`."""
    if entity not in ENTITIES:
        raise ValueError(f"unknown entity {entity!r}: use {', '.join(ENTITIES)}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: use csv or json")
    with db.session() as session:
        records = _RECORDS[entity](session)
    if fmt == "json":
        return json.dumps(records, indent=2, ensure_ascii=False) + "\n"
    return _to_csv(entity, records, raw)


def _to_csv(entity: str, records: list[dict[str, Any]], raw: bool) -> str:
    custom_keys = sorted({key for r in records for key in r.get("custom_fields", {})})
    header = [*FIELDS[entity], *(CUSTOM_PREFIX + key for key in custom_keys)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    safe = (lambda cell: cell) if raw else neutralise
    writer.writerow([safe(name) for name in header])
    for record in records:
        row = [_cell(record[name]) for name in FIELDS[entity]]
        custom = record.get("custom_fields", {})
        row += [_cell(custom.get(key)) for key in custom_keys]
        writer.writerow([safe(cell) for cell in row])
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return MULTI_SEPARATOR.join(str(v) for v in value)
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _thirdparties(session: Session) -> list[dict[str, Any]]:
    domains: dict[int, list[str]] = {}
    for d in session.exec(select(MailDomain).order_by(col(MailDomain.id))):
        domains.setdefault(d.thirdparty_id, []).append(d.domain)
    general: dict[int, list[str]] = {}
    for a in session.exec(select(MailAddress).where(col(MailAddress.contact_id).is_(None))
                          .order_by(col(MailAddress.id))):
        general.setdefault(a.thirdparty_id, []).append(a.address)
    return [{"id": tp.id, "external_id": tp.external_id, "name": tp.name, "kind": tp.kind, "tags": list(tp.tags or []),
             "domains": domains.get(tp.id or 0, []), "addresses": general.get(tp.id or 0, []), "owner": tp.owner,
             "language": tp.language, "custom_fields": dict(tp.custom_fields or {}),
             **{name: getattr(tp, name) for name in POSTAL}}
            for tp in session.exec(select(ThirdParty).order_by(col(ThirdParty.id)))]


def _contacts(session: Session) -> list[dict[str, Any]]:
    refs = _thirdparty_refs(session)
    addresses: dict[int, list[str]] = {}
    for a in session.exec(select(MailAddress).where(col(MailAddress.contact_id).is_not(None))
                          .order_by(col(MailAddress.id))):
        addresses.setdefault(a.contact_id or 0, []).append(a.address)
    return [{"id": c.id, "external_id": c.external_id, "thirdparty": refs[c.thirdparty_id], "name": c.name,
             "addresses": addresses.get(c.id or 0, []), "phones": list(c.phones or []), "role": c.role,
             "language": c.language, **{name: getattr(c, name) for name in POSTAL + PERSON}}
            for c in session.exec(select(Contact).order_by(col(Contact.id)))]


def _documents(session: Session) -> list[dict[str, Any]]:
    refs = _thirdparty_refs(session)
    return [{"id": d.id, "ref": d.ref, "kind": d.kind, "thirdparty": refs[d.thirdparty_id]}
            for d in session.exec(select(Document).order_by(col(Document.id)))]


def _thirdparty_refs(session: Session) -> dict[int, str]:
    """How an import finds each third party again: its external id, else its name."""
    rows = session.exec(select(ThirdParty.id, ThirdParty.external_id, ThirdParty.name)).all()
    return {tp_id: ext or name for tp_id, ext, name in rows if tp_id is not None}


_RECORDS = {"thirdparties": _thirdparties, "contacts": _contacts, "documents": _documents}
