"""Import third parties, contacts or documents from a CSV file: all rows or none, bad rows reported by line."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from sqlmodel import Session

from maild.directory import changes, references, writes
from maild.directory.csv_rows import (
    ChunkStorer,
    ImportOptions,
    ImportReport,
    Outcome,
    Row,
    attempt,
    import_rows,
    map_columns,
)
from maild.directory.fields import MULTI_SEPARATOR
from maild.directory.postal import PERSON, POSTAL
from maild.store.db import Database

ENTITIES = ("thirdparties", "contacts", "documents")
FIELDS: dict[str, tuple[str, ...]] = {
    "thirdparties": ("external_id", "name", "kind", "tags", "domains", "addresses", "owner", "language", *POSTAL),
    "contacts": ("external_id", "thirdparty", "name", "addresses", "phones", "role", "language", *PERSON, *POSTAL),
    "documents": ("ref", "kind", "thirdparty"),
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "thirdparties": ("name",),
    "contacts": ("thirdparty", "name"),
    "documents": ("ref", "thirdparty"),
}
CUSTOM_PREFIX = "custom."


def import_csv(db: Database, entity: str, path: str | Path, mapping: Mapping[str, str] | None = None,
               delimiter: str = ",", options: ImportOptions | None = None) -> ImportReport:
    """Upsert every row of `path` (by external id; rows without one are inserted), in one transaction: a row
    that is rejected (reported with its line) means nothing is stored, unless `options.skip_invalid`. A bad
    file, header or mapping raises ValueError, and nothing is stored."""
    if entity not in ENTITIES:
        raise ValueError(f"unknown entity {entity!r}: use {', '.join(ENTITIES)}")
    return import_rows(db, path, delimiter, lambda header: _columns(entity, header, dict(mapping or {}), path),
                       _STORERS[entity], options or ImportOptions())


def is_field(entity: str, name: str) -> bool:
    if entity == "thirdparties" and name.startswith(CUSTOM_PREFIX):
        return bool(name[len(CUSTOM_PREFIX):].strip())
    return name in FIELDS[entity]


def _columns(entity: str, header: list[str], mapping: dict[str, str], path: str | Path) -> list[str | None]:
    choices = ", ".join(FIELDS[entity]) + (", custom.NAME" if entity == "thirdparties" else "")
    return map_columns(header, mapping, path, entity=entity, is_known=lambda name: is_field(entity, name),
                       choices=choices, required=REQUIRED[entity])


def _multi(row: Row, name: str) -> list[str] | None:
    """A `;`-separated cell as a list; None when the file has no such column (leave the stored value)."""
    if name not in row:
        return None
    return [part.strip() for part in row[name].split(MULTI_SEPARATOR) if part.strip()]


def _store_thirdparties(session: Session, rows: list[Row]) -> list[Outcome]:
    prepared = [attempt(lambda row=row: _thirdparty_changes(row)) for row in rows]
    valid = [p for p in prepared if isinstance(p, changes.ThirdPartyChanges)]
    return _merge(prepared, changes.ThirdPartyChanges, list(writes.upsert_thirdparties(session.connection(), valid)))


def _thirdparty_changes(row: Row) -> changes.ThirdPartyChanges:
    custom = {k[len(CUSTOM_PREFIX):].strip(): v for k, v in row.items() if k.startswith(CUSTOM_PREFIX)}
    return changes.thirdparty(
        external_id=row.get("external_id"), name=row.get("name", ""), kind=row.get("kind"), tags=_multi(row, "tags"),
        custom_fields=custom or None, owner=row.get("owner"), language=row.get("language"),
        domains=_multi(row, "domains"), addresses=_multi(row, "addresses"),
        postal_address={name: row[name] for name in POSTAL if name in row})


def _store_contacts(session: Session, rows: list[Row]) -> list[Outcome]:
    conn = session.connection()
    companies = references.resolve_ids(conn, [row.get("thirdparty", "") for row in rows], by_id=False)
    prepared = [attempt(lambda row=row: _contact_changes(row, companies)) for row in rows]
    valid = [p for p in prepared if isinstance(p, changes.ContactChanges)]
    return _merge(prepared, changes.ContactChanges, writes.upsert_contacts(conn, valid))


def _contact_changes(row: Row, companies: dict[str, int | Exception]) -> changes.ContactChanges:
    name = row.get("name", "")
    if not name:
        raise ValueError("name is missing")
    company = companies[row.get("thirdparty", "")]
    if isinstance(company, Exception):
        raise company
    return changes.contact(external_id=row.get("external_id"), thirdparty_id=company, name=name,
                           addresses=_multi(row, "addresses"), phones=_multi(row, "phones"), role=row.get("role"),
                           language=row.get("language"),
                           letter={name: row[name] for name in POSTAL + PERSON if name in row})


def _store_documents(session: Session, rows: list[Row]) -> list[Outcome]:
    conn = session.connection()
    companies = references.resolve_ids(conn, [row.get("thirdparty", "") for row in rows], by_id=False)
    prepared = [attempt(lambda row=row: _document_changes(row, companies)) for row in rows]
    valid = [p for p in prepared if isinstance(p, changes.DocumentChanges)]
    return _merge(prepared, changes.DocumentChanges, writes.upsert_documents(conn, valid))


def _document_changes(row: Row, companies: dict[str, int | Exception]) -> changes.DocumentChanges:
    if not row.get("ref"):
        raise ValueError("document reference is missing")
    company = companies[row.get("thirdparty", "")]
    if isinstance(company, Exception):
        raise company
    return changes.document(ref=row["ref"], thirdparty_id=company, kind=row.get("kind"))


def _merge(prepared: list[object], valid_type: type, written: list[writes.Result | LookupError]) -> list[Outcome]:
    """Each row's outcome: its validation error, or what the write of its changes gave."""
    results = iter(written)
    out: list[Outcome] = []
    for item in prepared:
        if not isinstance(item, valid_type):
            assert isinstance(item, ValueError | LookupError)
            out.append(item)
            continue
        result = next(results)
        out.append(result if isinstance(result, LookupError) else result[1])
    return out


_STORERS: dict[str, ChunkStorer] = {
    "thirdparties": _store_thirdparties,
    "contacts": _store_contacts,
    "documents": _store_documents,
}
