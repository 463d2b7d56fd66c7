"""Adding third parties, contacts and documents with every field the CLI offers, each audited in its transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, select

from maild.directory import changes, writes
from maild.services import audit
from maild.services.actor import Actor
from maild.store.db import Database
from maild.store.models import Contact, Document, ThirdParty

_tp, _con, _doc = ThirdParty.__table__, Contact.__table__, Document.__table__


def add_thirdparty(db: Database, actor: Actor, *, name: str, kind: str = "customer", external_id: str | None = None,
                   tags: Iterable[str] = (), custom_fields: Mapping[str, Any] | None = None,
                   owner: str | None = None, language: str | None = None, domains: Iterable[str] = (),
                   addresses: Iterable[str] = (), postal_address: Mapping[str, Any] | None = None) -> int:
    """A new third party (ValueError when its external id is taken); audited as `thirdparty.create`."""
    actor.require("staff")
    item = changes.thirdparty(external_id=external_id, name=name, kind=kind, tags=tags,
                              custom_fields=custom_fields or {}, owner=owner, language=language, domains=domains,
                              addresses=addresses, postal_address=postal_address)
    with db.engine.begin() as conn:
        if item.external_id is not None and conn.execute(
                select(_tp.c.id).where(_tp.c.external_id == item.external_id)).first() is not None:
            raise ValueError(f"a third party with external id {item.external_id!r} already exists")
        thirdparty_id = writes.upsert_thirdparties(conn, [item])[0][0]
        audit.record(conn, actor, "thirdparty.create", f"thirdparty:{thirdparty_id}",
                     after={"name": name.strip(), "kind": kind, "external_id": external_id, "tags": list(tags),
                            "custom_fields": dict(custom_fields or {}), "owner": owner, "language": language,
                            "domains": list(domains), "addresses": list(addresses),
                            "postal_address": _present(postal_address)})
    return thirdparty_id


def add_contact(db: Database, actor: Actor, *, thirdparty_id: int, name: str, addresses: Iterable[str] = (),
                phones: Iterable[str] = (), role: str | None = None, external_id: str | None = None,
                language: str | None = None, letter: Mapping[str, Any] | None = None) -> int:
    """A new contact of a third party (ValueError when its external id is taken); audited as `contact.create`."""
    actor.require("staff")
    item = changes.contact(external_id=external_id, thirdparty_id=thirdparty_id, name=name, phones=phones, role=role,
                           language=language, addresses=addresses, letter=letter)
    with db.engine.begin() as conn:
        if item.external_id is not None and conn.execute(
                select(_con.c.id).where(_con.c.external_id == item.external_id)).first() is not None:
            raise ValueError(f"a contact with external id {item.external_id!r} already exists")
        contact_id = _one(writes.upsert_contacts(conn, [item]))[0]
        audit.record(conn, actor, "contact.create", f"contact:{contact_id}",
                     after={"thirdparty_id": thirdparty_id, "name": name.strip(), "addresses": list(addresses),
                            "phones": list(phones), "role": role, "external_id": external_id,
                            "language": language, "letter": _present(letter)})
    return contact_id


def upsert_document(db: Database, actor: Actor, *, ref: str, thirdparty_id: int,
                    kind: str | None = "invoice") -> tuple[int, bool]:
    """Insert the document (ref, kind), or move it to this third party: (id, created); audited as
    `document.create` or `document.update` with the owner before."""
    actor.require("staff")
    item = changes.document(ref=ref, thirdparty_id=thirdparty_id, kind=kind)
    with db.engine.begin() as conn:
        before = _document_owner(conn, item.ref, item.kind)
        doc_id, created = _one(writes.upsert_documents(conn, [item]))
        audit.record(conn, actor, "document.create" if created else "document.update", f"document:{doc_id}",
                     before=before, after={"ref": item.ref, "kind": item.kind,
                                           "thirdparty_id": thirdparty_id})
    return doc_id, created


def _document_owner(conn: Connection, ref: Any, kind: Any) -> dict[str, Any] | None:
    row = conn.execute(select(_doc.c.ref, _doc.c.kind, _doc.c.thirdparty_id)
                       .where(_doc.c.ref == ref, _doc.c.kind == kind)).first()
    return None if row is None else {"ref": row.ref, "kind": row.kind, "thirdparty_id": row.thirdparty_id}


def _present(values: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (values or {}).items() if v not in (None, "")}


def _one(results: list[writes.Result | LookupError]) -> writes.Result:
    if isinstance(results[0], LookupError):
        raise results[0]
    return results[0]
