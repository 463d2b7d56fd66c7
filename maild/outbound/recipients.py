"""Who a mail goes to: an address (with its contact and company when known) or a third party's first contact.

An address that is not in the directory but is at a known third party's domain (or a subdomain of it) belongs
to that third party (no contact): the mail is on its timeline. A domain of several third parties decides none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from maild.business.people import contact_views, thirdparty_views
from maild.directory.service import resolve_thirdparty
from maild.matchers.freemail import shipped
from maild.matchers.normalize import domain_and_parents, domain_of, is_free_mail, normalize_address
from maild.store.db import Database
from maild.store.models import Contact, MailAddress, MailDomain, ThirdParty

_tp, _contacts, _addresses = ThirdParty.__table__, Contact.__table__, MailAddress.__table__
_domains = MailDomain.__table__


@dataclass
class Recipient:
    address: str
    thirdparty: dict[str, Any] | None = None
    contact: dict[str, Any] | None = None


def resolve_recipient(db: Database, target: str) -> Recipient:
    """An address (its contact and company looked up when known) or a third party (its first contact)."""
    return resolve_recipients(db, [target])[0]


def resolve_recipients(db: Database, targets: Sequence[str]) -> list[Recipient]:
    """`resolve_recipient` for many targets with one query per table for all the addresses among them.

    An address known several times (e.g. a contact of two companies) resolves to its oldest record.
    Raises ValueError for a malformed address, LookupError (via resolve_thirdparty) for an unknown name.
    """
    normals: dict[str, str] = {}
    for target in targets:
        if "@" in target:
            normal = normalize_address(target)
            if normal is None:
                raise ValueError(f"{target!r} is not a mail address")
            normals[target] = normal
    with db.engine.connect() as conn:
        owners: dict[str, tuple[int | None, int | None]] = {}
        if normals:
            query = (select(_addresses.c.address, _addresses.c.thirdparty_id, _addresses.c.contact_id)
                     .where(_addresses.c.address.in_(sorted(set(normals.values())))).order_by(_addresses.c.id))
            for address, tp_id, contact_id in conn.execute(query):
                owners.setdefault(address, (tp_id, contact_id))
            unknown = {normal for normal in normals.values() if normal not in owners}
            for normal, tp_id in _by_domain(conn, unknown).items():
                owners[normal] = (tp_id, None)
        picked: list[tuple[str, int | None, int | None]] = []
        for target in targets:
            if target in normals:
                tp_id, contact_id = owners.get(normals[target], (None, None))
                picked.append((target.strip(), tp_id, contact_id))
            else:
                picked.append(_first_contact(conn, db, target))
        # The templates' views: first/last name, title and email of a contact; address fields of a company.
        party_rows = _rows(conn, _tp, {tp for _, tp, _ in picked if tp})
        parties = dict(zip(party_rows, thirdparty_views(conn, party_rows.values()), strict=True))
        contact_rows = _rows(conn, _contacts, {c for _, _, c in picked if c})
        contacts = dict(zip(contact_rows, contact_views(conn, contact_rows.values()), strict=True))
    return [Recipient(address, parties.get(tp_id) if tp_id else None, contacts.get(c_id) if c_id else None)
            for address, tp_id, c_id in picked]


def _by_domain(conn: Any, addresses: set[str]) -> dict[str, int]:
    """The third party of each address whose domain (most specific first) is registered to exactly one."""
    candidates: dict[str, tuple[str, ...]] = {}
    free_mail = shipped() if addresses else frozenset()
    for address in addresses:
        domain = domain_of(address)
        if domain and not is_free_mail(domain, free_mail):
            candidates[address] = domain_and_parents(domain)
    wanted = sorted({d for domains in candidates.values() for d in domains})
    if not wanted:
        return {}
    owners: dict[str, set[int]] = {}
    for domain, tp_id in conn.execute(select(_domains.c.domain, _domains.c.thirdparty_id)
                                      .where(_domains.c.domain.in_(wanted))):
        owners.setdefault(domain, set()).add(tp_id)
    found: dict[str, int] = {}
    for address, domains in candidates.items():
        registered = next((owners[d] for d in domains if d in owners), set())
        if len(registered) == 1:
            found[address] = next(iter(registered))
    return found


def _first_contact(conn: Any, db: Database, name: str) -> tuple[str, int | None, int | None]:
    tp = resolve_thirdparty(db, name)
    row = conn.execute(select(_addresses.c.address, _addresses.c.contact_id)
                       .where(_addresses.c.thirdparty_id == tp.id)
                       .order_by(_addresses.c.contact_id.is_(None), _addresses.c.id)).first()
    if row is None:
        raise ValueError(f"{tp.name} has no mail address; add one with `maild contact add`")
    return row[0], tp.id, row[1]


def _rows(conn: Any, table: Any, ids: set[int]) -> dict[int, dict[str, Any]]:
    if not ids:
        return {}
    return {row.id: dict(row._mapping) for row in conn.execute(select(table).where(table.c.id.in_(sorted(ids))))}
