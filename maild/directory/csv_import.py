"""Import third parties, contacts or documents from a CSV file: all rows or none, bad rows reported by line."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import DataError, IntegrityError
from sqlmodel import Session

from maild.directory import service
from maild.directory.csv_formulas import restore
from maild.directory.csv_records import BadRecord, read_text, records
from maild.directory.fields import MULTI_SEPARATOR
from maild.store.db import Database

ENTITIES = ("thirdparties", "contacts", "documents")
FIELDS: dict[str, tuple[str, ...]] = {
    "thirdparties": ("external_id", "name", "kind", "tags", "domains", "addresses", "owner", "language"),
    "contacts": ("external_id", "thirdparty", "name", "addresses", "phones", "role", "language"),
    "documents": ("ref", "kind", "thirdparty"),
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "thirdparties": ("name",),
    "contacts": ("thirdparty", "name"),
    "documents": ("ref", "thirdparty"),
}
CUSTOM_PREFIX = "custom."


@dataclass(frozen=True)
class ImportOptions:
    skip_invalid: bool = False  # store the good rows even when others are rejected (default: all or nothing)
    raw: bool = False  # keep a leading ' before =, +, -, @ (default: take off the one `maild export` adds)


@dataclass
class ImportReport:
    inserted: int = 0  # counted also when nothing was committed: what the file would have done
    updated: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (physical line number, reason)
    ignored_columns: list[str] = field(default_factory=list)
    committed: bool = True  # False: rows were rejected, so no row was stored (all or nothing)


Row = dict[str, str]
Storer = Callable[[Session, Row], bool]


class _RollBack(Exception):
    """Leaves the import's transaction without committing it."""


def import_csv(db: Database, entity: str, path: str | Path, mapping: Mapping[str, str] | None = None,
               delimiter: str = ",", options: ImportOptions | None = None) -> ImportReport:
    """Upsert every row of `path` (by external id; rows without one are inserted), in one transaction: a row
    that is rejected (reported with its line) means nothing is stored, unless `options.skip_invalid`. A bad
    file, header or mapping raises ValueError, and nothing is stored."""
    if entity not in ENTITIES:
        raise ValueError(f"unknown entity {entity!r}: use {', '.join(ENTITIES)}")
    return import_rows(db, path, delimiter, lambda header: _columns(entity, header, dict(mapping or {}), path),
                       _STORERS[entity], options or ImportOptions())


def import_rows(db: Database, path: str | Path, delimiter: str,
                columns_for: Callable[[list[str]], list[str | None]], store: Storer,
                options: ImportOptions) -> ImportReport:
    """The loop every CSV import shares: the header names the columns (`columns_for` maps them to fields,
    None: ignored), each further record becomes a row for `store` (True: inserted, False: updated), all in one
    transaction with a savepoint per row. A row it refuses (ValueError, LookupError, the database) is reported
    with its line; then nothing is committed, unless `options.skip_invalid` (then the other rows are)."""
    if len(delimiter) != 1 or delimiter in "\r\n\"":
        raise ValueError(f"the delimiter must be one character other than a quote or a line break, not {delimiter!r}")
    text = read_text(path)
    report = ImportReport()
    try:
        with db.session(write=True) as session:
            _import_records(session, text, path, delimiter, columns_for, store, options, report)
            if report.rejected and not options.skip_invalid:
                raise _RollBack
    except _RollBack:
        report.committed = False
    return report


def _import_records(session: Session, text: str, path: str | Path, delimiter: str,
                    columns_for: Callable[[list[str]], list[str | None]], store: Storer, options: ImportOptions,
                    report: ImportReport) -> None:
    cell = (lambda value: value.strip()) if options.raw else (lambda value: restore(value.strip()))
    found = records(text, path, delimiter)
    first = next(found, None)
    if first is None:
        raise ValueError(f"{path} is empty: the first line must name the columns")
    if isinstance(first, BadRecord):
        raise ValueError(f"{path}:{first.line}: the header line is unreadable: {first.reason}")
    header = [cell(h) for h in first[1]]
    columns = columns_for(header)
    report.ignored_columns = [h for h, f in zip(header, columns, strict=True) if f is None and h]
    for record in found:
        if isinstance(record, BadRecord):
            report.rejected.append((record.line, record.reason))
            continue
        line, cells = record
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > len(columns):
            report.rejected.append((line, f"{len(cells)} cells but the header has {len(columns)} columns "
                                          "(check the delimiter and the quotes)"))
            continue
        row = {f: cell(c) for f, c in zip(columns, cells, strict=False) if f is not None}
        row.update({f: "" for f in columns[len(cells):] if f is not None})
        try:
            with session.begin_nested():
                created = store(session, row)
        except (ValueError, LookupError) as exc:
            report.rejected.append((line, str(exc)))
            continue
        except (IntegrityError, DataError) as exc:
            report.rejected.append((line, f"refused by the database: {str(exc.orig).strip().splitlines()[0]}"))
            continue
        if created:
            report.inserted += 1
        else:
            report.updated += 1


def is_field(entity: str, name: str) -> bool:
    if entity == "thirdparties" and name.startswith(CUSTOM_PREFIX):
        return bool(name[len(CUSTOM_PREFIX):].strip())
    return name in FIELDS[entity]


def _columns(entity: str, header: list[str], mapping: dict[str, str], path: str | Path) -> list[str | None]:
    choices = ", ".join(FIELDS[entity]) + (", custom.NAME" if entity == "thirdparties" else "")
    return map_columns(header, mapping, path, entity=entity, is_known=lambda name: is_field(entity, name),
                       choices=choices, required=REQUIRED[entity])


def map_columns(header: list[str], mapping: dict[str, str], path: str | Path, *, entity: str,
                is_known: Callable[[str], bool], choices: str, required: tuple[str, ...]) -> list[str | None]:
    """The field each column feeds (None: ignored). Explicit mappings (COLUMN=FIELD) win over same-named
    columns; an unknown field, a missing column, two columns for one field or no column for a required field
    is a ValueError naming the file."""
    for column, target in mapping.items():
        if not is_known(target.strip()):
            raise ValueError(f"the mapping {column}={target} names an unknown field: {entity} have {choices}")
        if column.strip() not in header:
            raise ValueError(f"the mapping names column {column!r}, which {path} does not have "
                             f"(its columns: {', '.join(header)})")
    explicit = {column.strip(): target.strip() for column, target in mapping.items()}
    mapped_fields = set(explicit.values())
    out: list[str | None] = []
    for name in header:
        if name in explicit:
            out.append(explicit[name])
        elif is_known(name) and name not in mapped_fields:
            out.append(name)
        else:
            out.append(None)
    taken = [f for f in out if f is not None]
    for name in sorted({f for f in taken if taken.count(f) > 1}):
        raise ValueError(f"{path}: several columns feed the field {name!r}")
    missing = [f for f in required if f not in taken]
    if missing:
        raise ValueError(f"{path}: no column for the required field(s) {', '.join(missing)} "
                         f"(its columns: {', '.join(header)}; map one with COLUMN=FIELD)")
    return out


def _multi(row: Row, name: str) -> list[str] | None:
    """A `;`-separated cell as a list; None when the file has no such column (leave the stored value)."""
    if name not in row:
        return None
    return [part.strip() for part in row[name].split(MULTI_SEPARATOR) if part.strip()]


def _store_thirdparty(session: Session, row: Row) -> bool:
    custom = {k[len(CUSTOM_PREFIX):].strip(): v for k, v in row.items() if k.startswith(CUSTOM_PREFIX)}
    _, created = service.upsert_thirdparty_in(
        session, external_id=row.get("external_id"), name=row.get("name", ""), kind=row.get("kind"),
        tags=_multi(row, "tags"), custom_fields=custom or None, owner=row.get("owner"),
        language=row.get("language"), domains=_multi(row, "domains"), addresses=_multi(row, "addresses"))
    return created


def _store_contact(session: Session, row: Row) -> bool:
    name = row.get("name", "")
    if not name:
        raise ValueError("name is missing")
    company = service.resolve_thirdparty_in(session, row.get("thirdparty", ""), by_id=False)
    assert company.id is not None
    _, created = service.upsert_contact_in(
        session, external_id=row.get("external_id"), thirdparty_id=company.id, name=name,
        addresses=_multi(row, "addresses"), phones=_multi(row, "phones"), role=row.get("role"),
        language=row.get("language"))
    return created


def _store_document(session: Session, row: Row) -> bool:
    if not row.get("ref"):
        raise ValueError("document reference is missing")
    company = service.resolve_thirdparty_in(session, row.get("thirdparty", ""), by_id=False)
    assert company.id is not None
    _, created = service.upsert_document_in(session, ref=row["ref"], thirdparty_id=company.id, kind=row.get("kind"))
    return created


_STORERS: dict[str, Storer] = {
    "thirdparties": _store_thirdparty,
    "contacts": _store_contact,
    "documents": _store_document,
}
