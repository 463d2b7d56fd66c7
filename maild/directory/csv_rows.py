"""The loop every CSV import shares: the header names the columns, rows are stored in chunks, all or nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection
from sqlalchemy.exc import DataError, IntegrityError
from sqlmodel import Session

from maild.directory.csv_formulas import restore
from maild.directory.csv_records import BadRecord, read_text, records
from maild.store.db import Database

CHUNK_ROWS = 500  # rows stored together (a savepoint each); a chunk the database refuses is retried row by row

Row = dict[str, str]
Outcome = bool | ValueError | LookupError  # True: inserted, False: updated; an error: this row is rejected
ChunkStorer = Callable[[Session, list[Row]], list[Outcome]]
Columns = Callable[[list[str]], list[str | None]]


@dataclass(frozen=True)
class ImportOptions:
    skip_invalid: bool = False  # store the good rows even when others are rejected (default: all or nothing)
    raw: bool = False  # keep a leading ' before =, +, -, @, tab, CR (default: take off the one export adds)
    # called in the import's transaction just before it commits (the audit entry of maild.services.imports)
    before_commit: Callable[[Connection, ImportReport], None] | None = None


@dataclass
class ImportReport:
    inserted: int = 0  # also when nothing was committed: what the file would have done
    updated: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (physical line number, reason)
    ignored_columns: list[str] = field(default_factory=list)
    committed: bool = True  # False: rows were rejected, so no row was stored (all or nothing)


class _RollBack(Exception):
    """Leaves the import's transaction without committing it."""


def import_rows(db: Database, path: str | Path, delimiter: str, columns_for: Columns, store: ChunkStorer,
                options: ImportOptions) -> ImportReport:
    """The header names the columns (`columns_for` maps them to fields, None: ignored); each further record is a
    row for `store`, all in one transaction. A row that is refused (a ValueError or LookupError outcome, the
    database) is reported with its line, and then nothing is committed unless `options.skip_invalid`. A bad
    file or header raises ValueError (and nothing is committed)."""
    if len(delimiter) != 1 or delimiter in "\r\n\"":
        raise ValueError(f"the delimiter must be one character other than a quote or a line break, not {delimiter!r}")
    report = ImportReport()
    try:
        text = read_text(path)
        with db.session(write=True) as session:
            _import(session, text, path, delimiter, columns_for, store, options, report)
            if report.rejected and not options.skip_invalid:
                raise _RollBack
            if options.before_commit is not None:
                options.before_commit(session.connection(), report)
    except _RollBack:
        report.committed = False
    except ValueError as exc:
        raise ValueError(f"{exc}; nothing imported") from None
    report.rejected.sort()
    return report


def one_by_one(store_row: Callable[[Session, Row], bool]) -> ChunkStorer:
    """A ChunkStorer that stores each row by itself (in a savepoint, so a refused row leaves nothing behind)."""

    def store(session: Session, rows: list[Row]) -> list[Outcome]:
        out: list[Outcome] = []
        for row in rows:
            try:
                with session.begin_nested():
                    out.append(store_row(session, row))
            except (ValueError, LookupError) as exc:
                out.append(exc)
        return out

    return store


def attempt(make: Callable[[], object]) -> object | ValueError | LookupError:
    """`make()`, or the ValueError/LookupError it raised (a row's outcome)."""
    try:
        return make()
    except (ValueError, LookupError) as exc:
        return exc


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


def _import(session: Session, text: str, path: str | Path, delimiter: str, columns_for: Columns,
            store: ChunkStorer, options: ImportOptions, report: ImportReport) -> None:
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
    chunk: list[tuple[int, Row]] = []
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
        chunk.append((line, row))
        if len(chunk) >= CHUNK_ROWS:
            _store(session, store, chunk, report)
            chunk = []
    _store(session, store, chunk, report)


def _store(session: Session, store: ChunkStorer, chunk: list[tuple[int, Row]], report: ImportReport) -> None:
    if not chunk:
        return
    rows = [row for _, row in chunk]
    try:
        with session.begin_nested():
            outcomes = store(session, rows)
    except (IntegrityError, DataError):  # find the row(s) the database refuses
        outcomes = []
        for row in rows:
            try:
                with session.begin_nested():
                    outcomes += store(session, [row])
            except (IntegrityError, DataError) as exc:
                outcomes.append(ValueError(f"refused by the database: {str(exc.orig).strip().splitlines()[0]}"))
    for (line, _), outcome in zip(chunk, outcomes, strict=True):
        if isinstance(outcome, Exception):
            report.rejected.append((line, str(outcome)))
        elif outcome:
            report.inserted += 1
        else:
            report.updated += 1
