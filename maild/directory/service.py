"""Reading and writing the directory: third parties, their contacts, mail addresses, domains and documents.

Every write is one transaction; invalid input raises ValueError, an unknown reference LookupError.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from maild.clock import as_utc, utcnow
from maild.directory import fields
from maild.matchers.normalize import name_key
from maild.store.db import Database
from maild.store.models import Contact, Document, Event, MailAddress, MailDomain, ThirdParty

TIMELINE_LIMIT = 20


@dataclass
class _ThirdPartyChanges:
    columns: dict[str, Any]
    custom: dict[str, Any] | None
    domains: list[str] | None
    addresses: list[str] | None


# --- third parties -----------------------------------------------------------------------------


def add_thirdparty(db: Database, *, name: str, kind: str = "customer", external_id: str | None = None,
                   tags: Iterable[str] = (), custom_fields: Mapping[str, Any] | None = None,
                   owner: str | None = None, language: str | None = None, domains: Iterable[str] = (),
                   addresses: Iterable[str] = ()) -> int:
    """A new third party; `addresses` are its general addresses (info@, sales@), not a contact's."""
    ext = fields.text(external_id, "external id", 200)
    changes = _thirdparty_changes(name=name, kind=kind, tags=tags, custom_fields=custom_fields or {}, owner=owner,
                                  language=language, domains=domains, addresses=addresses)
    with db.session() as session:
        if ext is not None and _thirdparty_by_external_id(session, ext) is not None:
            raise ValueError(f"a third party with external id {ext!r} already exists")
        return _write_thirdparty(session, None, ext, changes)


def upsert_thirdparty(db: Database, *, external_id: str | None, name: str, kind: str | None = None,
                      tags: Iterable[str] | None = None, custom_fields: Mapping[str, Any] | None = None,
                      owner: str | None = None, language: str | None = None, domains: Iterable[str] | None = None,
                      addresses: Iterable[str] | None = None) -> tuple[int, bool]:
    """Insert, or update the third party with this external id (no external id: always insert).

    On update None leaves a field as it is and "" clears it; lists replace the stored ones; custom fields
    merge key by key, an empty value removing its key. Returns (id, created).
    """
    with db.session() as session:
        return upsert_thirdparty_in(session, external_id=external_id, name=name, kind=kind, tags=tags,
                                    custom_fields=custom_fields, owner=owner, language=language, domains=domains,
                                    addresses=addresses)


def upsert_thirdparty_in(session: Session, *, external_id: str | None, name: str, kind: str | None = None,
                         tags: Iterable[str] | None = None, custom_fields: Mapping[str, Any] | None = None,
                         owner: str | None = None, language: str | None = None,
                         domains: Iterable[str] | None = None, addresses: Iterable[str] | None = None,
                         ) -> tuple[int, bool]:
    """`upsert_thirdparty` in the caller's transaction."""
    ext = fields.text(external_id, "external id", 200)
    changes = _thirdparty_changes(name=name, kind=kind, tags=tags, custom_fields=custom_fields, owner=owner,
                                  language=language, domains=domains, addresses=addresses)
    existing = _thirdparty_by_external_id(session, ext) if ext is not None else None
    return _write_thirdparty(session, existing, ext, changes), existing is None


def resolve_thirdparty(db: Database, ref: str, *, by_id: bool = True) -> ThirdParty:
    """The one third party that `ref` names: its numeric id (unless by_id=False), external id, exact name, or a
    mail address of it or of one of its contacts."""
    with db.session() as session:
        return resolve_thirdparty_in(session, ref, by_id=by_id)


def resolve_thirdparty_in(session: Session, ref: str, *, by_id: bool = True) -> ThirdParty:
    """`resolve_thirdparty` in the caller's transaction."""
    wanted = ref.strip()
    if not wanted:
        raise LookupError("no third party named: the reference is empty")
    if by_id and wanted.isdigit():
        found = session.get(ThirdParty, int(wanted))
        if found is not None:
            return found
    found = _thirdparty_by_external_id(session, wanted)
    if found is not None:
        return found
    key = name_key(wanted)
    named = list(session.exec(select(ThirdParty).where(ThirdParty.name_key == key).order_by(col(ThirdParty.id))))
    if not named and "@" in wanted:  # a mail address of the third party or of one of its contacts
        named = _thirdparties_with_address(session, wanted)
        if len(named) > 1:
            ids = ", ".join(f"#{tp.id}" for tp in named)
            raise LookupError(f"several third parties have the address {wanted!r} ({ids}): use the id")
    if len(named) == 1:
        return named[0]
    if not named:
        how = "id, external id, name or mail address" if by_id else "external id, name or mail address"
        raise LookupError(f"no third party with {how} {wanted!r}")
    ids = ", ".join(f"#{tp.id}" for tp in named)
    raise LookupError(f"several third parties are named {wanted!r} ({ids}): use the id or the external id")


def thirdparties_with_address(db: Database, address: str) -> list[ThirdParty]:
    """The third parties that own this address, as a contact's or as a general one (normalised first)."""
    with db.session() as session:
        return _thirdparties_with_address(session, address)


def _thirdparties_with_address(session: Session, address: str) -> list[ThirdParty]:
    owners = select(MailAddress.thirdparty_id).where(MailAddress.address == fields.address(address))
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


def describe_thirdparty(db: Database, thirdparty_id: int) -> dict[str, Any]:
    """Everything about one third party: fields, domains, addresses, contacts, documents, newest events."""
    with db.session() as session:
        tp = _require_thirdparty(session, thirdparty_id)
        domains = session.exec(select(MailDomain.domain).where(MailDomain.thirdparty_id == thirdparty_id)).all()
        rows = session.exec(select(MailAddress).where(MailAddress.thirdparty_id == thirdparty_id)).all()
        contacts = session.exec(select(Contact).where(Contact.thirdparty_id == thirdparty_id)
                                .order_by(col(Contact.name_key), col(Contact.id))).all()
        documents = session.exec(select(Document).where(Document.thirdparty_id == thirdparty_id)
                                 .order_by(col(Document.kind), col(Document.ref))).all()
        events = session.exec(select(Event).where(Event.thirdparty_id == thirdparty_id)
                              .order_by(col(Event.occurred_at).desc(), col(Event.id).desc())
                              .limit(TIMELINE_LIMIT)).all()
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
                    "data": e.data} for e in events],
    }


# --- contacts ----------------------------------------------------------------------------------


def add_contact(db: Database, *, thirdparty_id: int, name: str, addresses: Iterable[str] = (),
                phones: Iterable[str] = (), role: str | None = None, external_id: str | None = None,
                language: str | None = None) -> int:
    """A new contact person of a third party, with their mail addresses and phone numbers."""
    ext = fields.text(external_id, "external id", 200)
    columns, clean_addresses = _contact_changes(thirdparty_id=thirdparty_id, name=name, phones=phones, role=role,
                                                language=language, addresses=addresses)
    with db.session() as session:
        if ext is not None and _contact_by_external_id(session, ext) is not None:
            raise ValueError(f"a contact with external id {ext!r} already exists")
        return _write_contact(session, None, ext, columns, clean_addresses)


def upsert_contact(db: Database, *, external_id: str | None, thirdparty_id: int, name: str,
                   addresses: Iterable[str] | None = None, phones: Iterable[str] | None = None,
                   role: str | None = None, language: str | None = None) -> tuple[int, bool]:
    """Insert, or update the contact with this external id (same None/"" rules as upsert_thirdparty)."""
    with db.session() as session:
        return upsert_contact_in(session, external_id=external_id, thirdparty_id=thirdparty_id, name=name,
                                 addresses=addresses, phones=phones, role=role, language=language)


def upsert_contact_in(session: Session, *, external_id: str | None, thirdparty_id: int, name: str,
                      addresses: Iterable[str] | None = None, phones: Iterable[str] | None = None,
                      role: str | None = None, language: str | None = None) -> tuple[int, bool]:
    """`upsert_contact` in the caller's transaction."""
    ext = fields.text(external_id, "external id", 200)
    columns, clean_addresses = _contact_changes(thirdparty_id=thirdparty_id, name=name, phones=phones, role=role,
                                                language=language, addresses=addresses)
    existing = _contact_by_external_id(session, ext) if ext is not None else None
    return _write_contact(session, existing, ext, columns, clean_addresses), existing is None


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
    with db.session() as session:
        return upsert_document_in(session, ref=ref, thirdparty_id=thirdparty_id, kind=kind)


def upsert_document_in(session: Session, *, ref: str, thirdparty_id: int,
                       kind: str | None = "invoice") -> tuple[int, bool]:
    """`upsert_document` in the caller's transaction: (id, created)."""
    clean_ref = fields.text(ref, "document reference", 100, required=True)
    clean_kind = (fields.text(kind, "document kind", 40) or "invoice").lower()
    _require_thirdparty(session, thirdparty_id)
    doc = session.exec(select(Document).where(Document.ref == clean_ref, Document.kind == clean_kind)).first()
    created = doc is None
    if doc is None:
        doc = Document(ref=clean_ref, kind=clean_kind, thirdparty_id=thirdparty_id)
        session.add(doc)
    doc.thirdparty_id = thirdparty_id
    session.flush()
    assert doc.id is not None
    return doc.id, created


# --- helpers -----------------------------------------------------------------------------------


def _thirdparty_changes(*, name: str, kind: str | None, tags: Iterable[str] | None,
                        custom_fields: Mapping[str, Any] | None, owner: str | None, language: str | None,
                        domains: Iterable[str] | None, addresses: Iterable[str] | None) -> _ThirdPartyChanges:
    clean_name = fields.text(name, "name", 300, required=True)
    columns: dict[str, Any] = {"name": clean_name, "name_key": name_key(clean_name)}
    if kind is not None and kind.strip():
        columns["kind"] = fields.thirdparty_kind(kind)
    if tags is not None:
        columns["tags"] = fields.labels(tags, "tag")
    if owner is not None:
        columns["owner"] = fields.text(owner, "owner", 200)
    if language is not None:
        columns["language"] = fields.text(language, "language", 20)
    return _ThirdPartyChanges(
        columns=columns,
        custom=None if custom_fields is None else fields.custom_fields(custom_fields),
        domains=None if domains is None else fields.domains(domains),
        addresses=None if addresses is None else fields.addresses(addresses),
    )


def _write_thirdparty(session: Session, tp: ThirdParty | None, external_id: str | None,
                      changes: _ThirdPartyChanges) -> int:
    now = utcnow()
    if tp is None:
        tp = ThirdParty(external_id=external_id, name=changes.columns["name"], created_at=now)
        session.add(tp)
    for key, value in changes.columns.items():
        setattr(tp, key, value)
    if changes.custom is not None:
        merged = dict(tp.custom_fields or {})
        for key, value in changes.custom.items():
            if value is None or value == "":
                merged.pop(key, None)
            else:
                merged[key] = value
        tp.custom_fields = merged
    tp.updated_at = now
    session.flush()
    assert tp.id is not None
    if changes.domains is not None:
        _replace_domains(session, tp.id, changes.domains)
    if changes.addresses is not None:
        _replace_addresses(session, tp.id, None, changes.addresses)
    return tp.id


def _contact_changes(*, thirdparty_id: int, name: str, phones: Iterable[str] | None, role: str | None,
                     language: str | None, addresses: Iterable[str] | None) -> tuple[dict[str, Any], list[str] | None]:
    clean_name = fields.text(name, "name", 300, required=True)
    columns: dict[str, Any] = {"thirdparty_id": thirdparty_id, "name": clean_name, "name_key": name_key(clean_name)}
    if phones is not None:
        columns["phones"] = fields.labels(phones, "phone number", 50)
    if role is not None:
        columns["role"] = fields.text(role, "role", 200)
    if language is not None:
        columns["language"] = fields.text(language, "language", 20)
    return columns, None if addresses is None else fields.addresses(addresses)


def _write_contact(session: Session, contact: Contact | None, external_id: str | None, columns: dict[str, Any],
                   addresses: list[str] | None) -> int:
    _require_thirdparty(session, columns["thirdparty_id"])
    if contact is None:
        contact = Contact(external_id=external_id, thirdparty_id=columns["thirdparty_id"])
        session.add(contact)
    moved = contact.id is not None and contact.thirdparty_id != columns["thirdparty_id"]
    for key, value in columns.items():
        setattr(contact, key, value)
    session.flush()
    assert contact.id is not None
    if moved:  # the contact changed company: their addresses go with them
        for row in session.exec(select(MailAddress).where(MailAddress.contact_id == contact.id)):
            row.thirdparty_id = contact.thirdparty_id
    if addresses is not None:
        _replace_addresses(session, contact.thirdparty_id, contact.id, addresses)
    return contact.id


def _replace_domains(session: Session, thirdparty_id: int, domains: list[str]) -> None:
    rows = session.exec(select(MailDomain).where(MailDomain.thirdparty_id == thirdparty_id)).all()
    for row in rows:
        if row.domain not in domains:
            session.delete(row)
    have = {row.domain for row in rows}
    session.add_all(MailDomain(domain=d, thirdparty_id=thirdparty_id) for d in domains if d not in have)
    session.flush()


def _replace_addresses(session: Session, thirdparty_id: int, contact_id: int | None, addresses: list[str]) -> None:
    """Make these the general addresses (contact_id None) of a third party, or a contact's addresses."""
    owner = col(MailAddress.contact_id).is_(None) if contact_id is None else MailAddress.contact_id == contact_id
    rows = session.exec(select(MailAddress).where(MailAddress.thirdparty_id == thirdparty_id, owner)).all()
    for row in rows:
        if row.address not in addresses:
            session.delete(row)
    have = {row.address for row in rows}
    session.add_all(MailAddress(address=a, thirdparty_id=thirdparty_id, contact_id=contact_id)
                    for a in addresses if a not in have)
    session.flush()


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
            "created_at": _iso(tp.created_at), "updated_at": _iso(tp.updated_at)}


def _contact_fields(contact: Contact, addresses: list[str]) -> dict[str, Any]:
    return {"id": contact.id, "name": contact.name, "role": contact.role, "external_id": contact.external_id,
            "language": contact.language, "phones": list(contact.phones or []), "addresses": addresses}


def _iso(value: Any) -> str | None:
    utc = as_utc(value)
    return utc.isoformat() if utc is not None else None

