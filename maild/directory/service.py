"""Reading and writing the directory: third parties, their contacts, mail addresses, domains and documents.

Every write is one transaction; invalid input raises ValueError, an unknown reference LookupError.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlmodel import Session, col, select

from maild.clock import as_utc
from maild.directory import changes, fields, references, writes
from maild.directory.postal import PERSON, POSTAL
from maild.store.db import Database
from maild.store.models import Contact, Document, Event, MailAddress, MailDomain, ThirdParty

TIMELINE_LIMIT = 20


# --- third parties -----------------------------------------------------------------------------


def add_thirdparty(db: Database, *, name: str, kind: str = "customer", external_id: str | None = None,
                   tags: Iterable[str] = (), custom_fields: Mapping[str, Any] | None = None,
                   owner: str | None = None, language: str | None = None, domains: Iterable[str] = (),
                   addresses: Iterable[str] = (), postal_address: Mapping[str, Any] | None = None) -> int:
    """A new third party; `addresses` are its general addresses (info@, sales@), not a contact's;
    `postal_address`: street, zip, town, country."""
    item = changes.thirdparty(external_id=external_id, name=name, kind=kind, tags=tags,
                              custom_fields=custom_fields or {}, owner=owner, language=language, domains=domains,
                              addresses=addresses, postal_address=postal_address)
    with db.session() as session:
        if item.external_id is not None and _thirdparty_by_external_id(session, item.external_id) is not None:
            raise ValueError(f"a third party with external id {item.external_id!r} already exists")
        return writes.upsert_thirdparties(session.connection(), [item])[0][0]


def upsert_thirdparty(db: Database, *, external_id: str | None, name: str, kind: str | None = None,
                      tags: Iterable[str] | None = None, custom_fields: Mapping[str, Any] | None = None,
                      owner: str | None = None, language: str | None = None, domains: Iterable[str] | None = None,
                      addresses: Iterable[str] | None = None,
                      postal_address: Mapping[str, Any] | None = None) -> tuple[int, bool]:
    """Insert, or update the third party with this external id (no external id: always insert).

    On update None leaves a field as it is and "" clears it; lists replace the stored ones; custom fields
    merge key by key, an empty value removing its key. Returns (id, created).
    """
    item = changes.thirdparty(external_id=external_id, name=name, kind=kind, tags=tags, custom_fields=custom_fields,
                              owner=owner, language=language, domains=domains, addresses=addresses,
                              postal_address=postal_address)
    with db.session() as session:
        return writes.upsert_thirdparties(session.connection(), [item])[0]


def resolve_thirdparty(db: Database, ref: str, *, by_id: bool = True) -> ThirdParty:
    """The one third party that `ref` names: its numeric id (unless by_id=False), external id, exact name, or a
    mail address of it or of one of its contacts (maild.directory.references)."""
    with db.session() as session:
        found = references.resolve_ids(session.connection(), [ref], by_id=by_id)[ref]
        if isinstance(found, Exception):
            raise found
        tp = session.get(ThirdParty, found)
        assert tp is not None
        return tp


def thirdparties_with_address(db: Database, address: str) -> list[ThirdParty]:
    """The third parties that own this address, as a contact's or as a general one (normalised first)."""
    normal = fields.address(address)
    with db.session() as session:
        owners = select(MailAddress.thirdparty_id).where(MailAddress.address == normal)
        query = select(ThirdParty).where(col(ThirdParty.id).in_(owners)).order_by(col(ThirdParty.id))
        return list(session.exec(query))


def list_thirdparties(db: Database, kind: str | None = None, tag: str | None = None) -> list[ThirdParty]:
    """Third parties by name, optionally only one kind and/or those carrying `tag` (case-insensitive)."""
    query = select(ThirdParty).order_by(col(ThirdParty.name_key), col(ThirdParty.id))
    if kind:
        query = query.where(ThirdParty.kind == fields.thirdparty_kind(kind))
    with db.session() as session:
        found = list(session.exec(query))
    if tag:
        wanted = tag.strip().casefold()
        found = [tp for tp in found if any(t.casefold() == wanted for t in tp.tags or [])]
    return found


def describe_thirdparty(db: Database, thirdparty_id: int, *, events: bool = True) -> dict[str, Any]:
    """Everything about one third party: fields, domains, addresses, contacts, documents, newest events (unless
    events=False: the web app pages the timeline itself)."""
    with db.session() as session:
        tp = _require_thirdparty(session, thirdparty_id)
        domains = session.exec(select(MailDomain.domain).where(MailDomain.thirdparty_id == thirdparty_id)).all()
        rows = session.exec(select(MailAddress).where(MailAddress.thirdparty_id == thirdparty_id)).all()
        contacts = session.exec(select(Contact).where(Contact.thirdparty_id == thirdparty_id)
                                .order_by(col(Contact.name_key), col(Contact.id))).all()
        documents = session.exec(select(Document).where(Document.thirdparty_id == thirdparty_id)
                                 .order_by(col(Document.kind), col(Document.ref))).all()
        newest = session.exec(select(Event).where(Event.thirdparty_id == thirdparty_id)
                              .order_by(col(Event.occurred_at).desc(), col(Event.id).desc())
                              .limit(TIMELINE_LIMIT)).all() if events else []
    by_contact: dict[int | None, list[str]] = {}
    for row in rows:
        by_contact.setdefault(row.contact_id, []).append(row.address)
    return {
        **_thirdparty_fields(tp),
        "domains": sorted(domains),
        "addresses": sorted(by_contact.get(None, [])),
        "contacts": [_contact_fields(c, sorted(by_contact.get(c.id, []))) for c in contacts],
        "documents": [{"id": d.id, "ref": d.ref, "kind": d.kind} for d in documents],
        "events": [{"id": e.id, "type": e.type, "occurred_at": _iso(e.occurred_at), "message_id": e.message_id,
                    "data": e.data} for e in newest],
    }


# --- contacts ----------------------------------------------------------------------------------


def add_contact(db: Database, *, thirdparty_id: int, name: str, addresses: Iterable[str] = (),
                phones: Iterable[str] = (), role: str | None = None, external_id: str | None = None,
                language: str | None = None, letter: Mapping[str, Any] | None = None) -> int:
    """A new contact person of a third party, with their mail addresses and phone numbers; `letter`: salutation,
    title, first_name, last_name and a postal address of their own (maild.directory.postal)."""
    item = changes.contact(external_id=external_id, thirdparty_id=thirdparty_id, name=name, phones=phones, role=role,
                           language=language, addresses=addresses, letter=letter)
    with db.session() as session:
        if item.external_id is not None and _contact_by_external_id(session, item.external_id) is not None:
            raise ValueError(f"a contact with external id {item.external_id!r} already exists")
        return _one(writes.upsert_contacts(session.connection(), [item]))[0]


def upsert_contact(db: Database, *, external_id: str | None, thirdparty_id: int, name: str,
                   addresses: Iterable[str] | None = None, phones: Iterable[str] | None = None,
                   role: str | None = None, language: str | None = None,
                   letter: Mapping[str, Any] | None = None) -> tuple[int, bool]:
    """Insert, or update the contact with this external id (same None/"" rules as upsert_thirdparty)."""
    item = changes.contact(external_id=external_id, thirdparty_id=thirdparty_id, name=name, phones=phones, role=role,
                           language=language, addresses=addresses, letter=letter)
    with db.session() as session:
        return _one(writes.upsert_contacts(session.connection(), [item]))


def list_contacts(db: Database, thirdparty_id: int | None = None) -> list[dict[str, Any]]:
    """Contacts (of one third party, or all) with their addresses and their company's name."""
    query = (select(Contact, ThirdParty.name).join(ThirdParty, col(ThirdParty.id) == col(Contact.thirdparty_id))
             .order_by(col(ThirdParty.name_key), col(Contact.name_key), col(Contact.id)))
    if thirdparty_id is not None:
        query = query.where(Contact.thirdparty_id == thirdparty_id)
    with db.session() as session:
        rows = session.exec(query).all()
        addresses = session.exec(select(MailAddress).where(col(MailAddress.contact_id).is_not(None))).all()
    by_contact: dict[int | None, list[str]] = {}
    for row in addresses:
        by_contact.setdefault(row.contact_id, []).append(row.address)
    return [{**_contact_fields(c, sorted(by_contact.get(c.id, []))), "thirdparty_id": c.thirdparty_id,
             "thirdparty_name": tp_name} for c, tp_name in rows]


# --- documents ---------------------------------------------------------------------------------


def add_document(db: Database, *, ref: str, thirdparty_id: int, kind: str = "invoice") -> int:
    """Record a document reference (invoice, proposal, order...); an existing (ref, kind) moves to this party."""
    return upsert_document(db, ref=ref, thirdparty_id=thirdparty_id, kind=kind)[0]


def upsert_document(db: Database, *, ref: str, thirdparty_id: int, kind: str | None = "invoice") -> tuple[int, bool]:
    """Insert the document (ref, kind), or move it to this third party: (id, created)."""
    item = changes.document(ref=ref, thirdparty_id=thirdparty_id, kind=kind)
    with db.session() as session:
        return _one(writes.upsert_documents(session.connection(), [item]))


# --- helpers -----------------------------------------------------------------------------------


def _one(results: list[writes.Result | LookupError]) -> writes.Result:
    if isinstance(results[0], LookupError):
        raise results[0]
    return results[0]


def _require_thirdparty(session: Session, thirdparty_id: int) -> ThirdParty:
    tp = session.get(ThirdParty, thirdparty_id)
    if tp is None:
        raise LookupError(f"no third party with id {thirdparty_id}")
    return tp


def _thirdparty_by_external_id(session: Session, external_id: str) -> ThirdParty | None:
    return session.exec(select(ThirdParty).where(ThirdParty.external_id == external_id)).first()


def _contact_by_external_id(session: Session, external_id: str) -> Contact | None:
    return session.exec(select(Contact).where(Contact.external_id == external_id)).first()


def _thirdparty_fields(tp: ThirdParty) -> dict[str, Any]:
    return {"id": tp.id, "name": tp.name, "kind": tp.kind, "external_id": tp.external_id, "tags": list(tp.tags or []),
            "custom_fields": dict(tp.custom_fields or {}), "owner": tp.owner, "language": tp.language,
            **{name: getattr(tp, name) for name in POSTAL},
            "created_at": _iso(tp.created_at), "updated_at": _iso(tp.updated_at)}


def _contact_fields(contact: Contact, addresses: list[str]) -> dict[str, Any]:
    return {"id": contact.id, "name": contact.name, "role": contact.role, "external_id": contact.external_id,
            "language": contact.language, "phones": list(contact.phones or []), "addresses": addresses,
            **{name: getattr(contact, name) for name in POSTAL + PERSON}}


def _iso(value: Any) -> str | None:
    utc = as_utc(value)
    return utc.isoformat() if utc is not None else None

