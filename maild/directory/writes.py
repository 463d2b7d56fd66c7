"""Write directory records in sets: a few statements for many upserts (the service and CSV import both use this).

Each function takes validated changes (maild.directory.changes) in file order and gives the result each would
have had written one after the other: a later change of the same external id (or document ref and kind)
updates what an earlier one inserted. It runs in the caller's transaction and commits nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import Column, ColumnElement, Connection, Table, bindparam, delete, insert, select, update

from maild.clock import utcnow
from maild.directory.changes import ContactChanges, DocumentChanges, ThirdPartyChanges
from maild.directory.postal import PERSON, POSTAL
from maild.directory.references import in_chunks
from maild.store.models import Contact, Document, MailAddress, MailDomain, ThirdParty

_tp: Table = ThirdParty.__table__  # type: ignore[attr-defined]
_contact: Table = Contact.__table__  # type: ignore[attr-defined]
_addr: Table = MailAddress.__table__  # type: ignore[attr-defined]
_domain: Table = MailDomain.__table__  # type: ignore[attr-defined]
_doc: Table = Document.__table__  # type: ignore[attr-defined]

TP_COLUMNS = ("external_id", "name", "name_key", "kind", "tags", "custom_fields", "owner", "language", "updated_at",
              *POSTAL)
CONTACT_COLUMNS = ("external_id", "thirdparty_id", "name", "name_key", "role", "phones", "language", *POSTAL, *PERSON)
State = dict[str, Any]
Result = tuple[int, bool]  # (id, created)


def upsert_thirdparties(conn: Connection, items: Sequence[ThirdPartyChanges]) -> list[Result]:
    """Insert each item, or update the third party with its external id (no external id: always insert)."""
    now = utcnow()
    by_ext = _load(conn, _tp, _tp.c.external_id, {i.external_id for i in items if i.external_id})
    new: list[State] = []
    states: list[tuple[State, bool]] = []
    for item in items:
        state = by_ext.get(item.external_id) if item.external_id else None
        created = state is None
        if state is None:
            state = {"id": None, "external_id": item.external_id, "kind": "customer", "tags": [],
                     "custom_fields": {}, "owner": None, "language": None, "created_at": now,
                     **dict.fromkeys(POSTAL)}
            new.append(state)
            if item.external_id:
                by_ext[item.external_id] = state
        state.update(item.columns, updated_at=now)
        if item.custom is not None:
            merged = dict(state["custom_fields"] or {})
            for key, value in item.custom.items():
                if value is None or value == "":
                    merged.pop(key, None)
                else:
                    merged[key] = value
            state["custom_fields"] = merged
        if item.domains is not None:
            state["+domains"] = item.domains
        if item.addresses is not None:
            state["+addresses"] = item.addresses
        states.append((state, created))
    _insert(conn, _tp, new, (*TP_COLUMNS, "created_at"))
    _update(conn, _tp, [s for s in by_ext.values() if "+loaded" in s], TP_COLUMNS)
    touched = _unique(state for state, _ in states)
    _replace_values(conn, _domain, _domain.c.thirdparty_id, _domain.c.domain,
                    {s["id"]: s["+domains"] for s in touched if "+domains" in s})
    _replace_values(conn, _addr, _addr.c.thirdparty_id, _addr.c.address,
                    {s["id"]: s["+addresses"] for s in touched if "+addresses" in s},
                    where=_addr.c.contact_id.is_(None), extra=lambda _owner: {"contact_id": None})
    return [(state["id"], created) for state, created in states]


def upsert_contacts(conn: Connection, items: Sequence[ContactChanges]) -> list[Result | LookupError]:
    """Insert each item, or update the contact with its external id; a contact that changes company takes its
    addresses along. An unknown third party id is a LookupError in that item's place."""
    now = utcnow()
    known = _existing_ids(conn, {i.thirdparty_id for i in items})
    by_ext = _load(conn, _contact, _contact.c.external_id, {i.external_id for i in items if i.external_id})
    for state in by_ext.values():
        state["+stored_thirdparty_id"] = state["thirdparty_id"]
    new: list[State] = []
    out: list[tuple[State, bool] | LookupError] = []
    for item in items:
        if item.thirdparty_id not in known:
            out.append(LookupError(f"no third party with id {item.thirdparty_id}"))
            continue
        state = by_ext.get(item.external_id) if item.external_id else None
        created = state is None
        if state is None:
            state = {"id": None, "external_id": item.external_id, "role": None, "phones": [], "language": None,
                     "created_at": now, **dict.fromkeys(POSTAL + PERSON)}
            new.append(state)
            if item.external_id:
                by_ext[item.external_id] = state
        state.update(item.columns, thirdparty_id=item.thirdparty_id)
        if item.addresses is not None:
            state["+addresses"] = item.addresses
        out.append((state, created))
    _insert(conn, _contact, new, (*CONTACT_COLUMNS, "created_at"))
    stored = [s for s in by_ext.values() if "+loaded" in s]
    _update(conn, _contact, stored, CONTACT_COLUMNS)
    moved = [{"b_contact": s["id"], "b_thirdparty": s["thirdparty_id"]}
             for s in stored if s["thirdparty_id"] != s["+stored_thirdparty_id"]]
    if moved:  # the contact changed company: their addresses go with them
        conn.execute(update(_addr).where(_addr.c.contact_id == bindparam("b_contact"))
                     .values(thirdparty_id=bindparam("b_thirdparty")), moved)
    touched = _unique(r[0] for r in out if not isinstance(r, LookupError))
    company = {s["id"]: s["thirdparty_id"] for s in touched}
    _replace_values(conn, _addr, _addr.c.contact_id, _addr.c.address,
                    {s["id"]: s["+addresses"] for s in touched if "+addresses" in s},
                    extra=lambda contact_id: {"thirdparty_id": company[contact_id]})
    return [r if isinstance(r, LookupError) else (r[0]["id"], r[1]) for r in out]


def upsert_documents(conn: Connection, items: Sequence[DocumentChanges]) -> list[Result | LookupError]:
    """Insert each document, or move the existing one with its ref and kind to the item's third party."""
    known = _existing_ids(conn, {i.thirdparty_id for i in items})
    by_key: dict[tuple[str, str], State] = {}
    for refs in in_chunks(sorted({i.ref for i in items})):
        for row in conn.execute(select(_doc).where(_doc.c.ref.in_(refs))).mappings():
            by_key[(row["ref"], row["kind"])] = {**row, "+loaded": True}
    new: list[State] = []
    out: list[tuple[State, bool] | LookupError] = []
    for item in items:
        if item.thirdparty_id not in known:
            out.append(LookupError(f"no third party with id {item.thirdparty_id}"))
            continue
        state = by_key.get((item.ref, item.kind))
        if state is None:
            state = by_key[(item.ref, item.kind)] = {"id": None, "ref": item.ref, "kind": item.kind}
            new.append(state)
            out.append((state, True))
        else:
            out.append((state, False))
        state["thirdparty_id"] = item.thirdparty_id
    _insert(conn, _doc, new, ("ref", "kind", "thirdparty_id"))
    _update(conn, _doc, [s for s in by_key.values() if "+loaded" in s], ("thirdparty_id",))
    return [r if isinstance(r, LookupError) else (r[0]["id"], r[1]) for r in out]


# --- helpers -----------------------------------------------------------------------------------


def _unique(states: Iterable[State]) -> list[State]:
    return list({id(s): s for s in states}.values())


def _load(conn: Connection, table: Table, key: Column[Any], values: set[str | None]) -> dict[str, State]:
    """The stored rows whose `key` is one of `values`, as mutable states marked `+loaded`."""
    found: dict[str, State] = {}
    for chunk in in_chunks(sorted(v for v in values if v)):
        for row in conn.execute(select(table).where(key.in_(chunk))).mappings():
            found[row[key.name]] = {**row, "+loaded": True}
    return found


def _existing_ids(conn: Connection, ids: set[int]) -> set[int]:
    found: set[int] = set()
    for chunk in in_chunks(sorted(ids)):
        found.update(conn.execute(select(_tp.c.id).where(_tp.c.id.in_(chunk))).scalars())
    return found


def _insert(conn: Connection, table: Table, states: list[State], columns: Sequence[str]) -> None:
    """INSERT the new states (in order) and set their ids."""
    if not states:
        return
    values = [{c: s[c] for c in columns} for s in states]
    if conn.dialect.name == "sqlite":  # multi-row INSERTs (1000 rows each) that SQLite numbers in row order
        ids = sorted(conn.execute(insert(table).returning(table.c.id), values).scalars())
    else:
        ids = list(conn.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), values).scalars())
    for state, new_id in zip(states, ids, strict=True):
        state["id"] = new_id


def _update(conn: Connection, table: Table, states: list[State], columns: Sequence[str]) -> None:
    """UPDATE the stored states (one statement, executed for many rows)."""
    if not states:
        return
    statement = (update(table).where(table.c.id == bindparam("b_id"))
                 .values({c: bindparam("b_" + c, type_=table.c[c].type) for c in columns}))
    conn.execute(statement, [{"b_id": s["id"], **{"b_" + c: s[c] for c in columns}} for s in states])


def _replace_values(conn: Connection, table: Table, owner: Column[Any], value: Column[Any],
                    wanted: dict[int, list[str]], *, where: ColumnElement[bool] | None = None,
                    extra: Callable[[int], dict[str, Any]] = lambda _owner: {}) -> None:
    """Make `wanted[o]` the values (domains, addresses) of each owner `o`: delete the others, add the missing."""
    if not wanted:
        return
    have: dict[int, dict[str, list[int]]] = {}
    for owners in in_chunks(sorted(wanted)):
        query = select(table.c.id, owner, value).where(owner.in_(owners))
        if where is not None:
            query = query.where(where)
        for row_id, row_owner, row_value in conn.execute(query.order_by(table.c.id)):
            have.setdefault(row_owner, {}).setdefault(row_value, []).append(row_id)
    gone = [row_id for o, values in have.items() for v, row_ids in values.items() if v not in wanted[o]
            for row_id in row_ids]
    for chunk in in_chunks(gone):
        conn.execute(delete(table).where(table.c.id.in_(chunk)))
    added = [{owner.name: o, value.name: v, **extra(o)} for o, values in wanted.items() for v in values
             if v not in have.get(o, {})]
    if added:
        conn.execute(insert(table), added)
