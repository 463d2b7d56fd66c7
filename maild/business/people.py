"""Template views of directory records: a contact's first/last name, title, greeting and mail address; a third
party's postal address (its columns, else its custom fields) and general mail address. Used where mail is
rendered."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, select

from maild.store.models import MailAddress

_addr = MailAddress.__table__
ADDRESS_FIELDS: dict[str, tuple[str, ...]] = {  # template key -> custom field names it is read from, in order
    "street": ("street", "address", "street_address", "strasse", "straße"),
    "zip": ("zip", "postcode", "postal_code", "plz"),
    "town": ("town", "city", "ort"),
    "country": ("country", "land"),
}


def split_name(name: str | None) -> tuple[str, str]:
    """`Jürgen Weiß` -> (Jürgen, Weiß); `Weiß, Jürgen` -> (Jürgen, Weiß); one word is both; blank -> ("", "")."""
    text = " ".join((name or "").split())
    if not text:
        return "", ""
    if "," in text:
        last, _, first = text.partition(",")
        return first.strip() or last.strip(), last.strip()
    first, _, last = text.rpartition(" ")
    return (first, last) if first else (last, last)


def contact_view(conn: Connection, contact: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The contact's row plus first_name, last_name, title ("" when unknown) and email (its first address)."""
    if contact is None:
        return None
    return contact_views(conn, [contact])[0]


def contact_views(conn: Connection, contacts: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """`contact_view` of each contact, in order, with one query for all their addresses."""
    contacts = list(contacts)
    emails = _first_addresses(conn, _addr.c.contact_id, [c.get("id") for c in contacts])
    views = []
    for contact in contacts:
        first, last = split_name(contact.get("name"))
        views.append({**contact, "first_name": contact.get("first_name") or first,
                      "last_name": contact.get("last_name") or last, "title": contact.get("title") or "",
                      "email": emails.get(contact.get("id")) or "", "phone": (contact.get("phones") or [""])[0],
                      "role": contact.get("role") or ""})
    return views


def thirdparty_view(conn: Connection, thirdparty: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The third party's row plus street, zip, town, country (its postal address columns, else custom fields of
    those names; left out when neither has one) and email (its first general address, or "")."""
    if thirdparty is None:
        return None
    return thirdparty_views(conn, [thirdparty])[0]


def thirdparty_views(conn: Connection, thirdparties: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """`thirdparty_view` of each third party, in order, with one query for all their general addresses."""
    parties = list(thirdparties)
    emails = _first_addresses(conn, _addr.c.thirdparty_id, [tp.get("id") for tp in parties], general=True)
    views = []
    for thirdparty in parties:
        custom = {str(k).strip().casefold(): v for k, v in (thirdparty.get("custom_fields") or {}).items()}
        view = dict(thirdparty)
        for key, names in ADDRESS_FIELDS.items():
            if view.get(key) not in (None, ""):
                continue  # the postal address column
            value = next((custom[n] for n in names if custom.get(n) not in (None, "")), None)
            if value is not None:
                view[key] = str(value)
            else:
                view.pop(key, None)
        view["email"] = emails.get(thirdparty.get("id")) or ""
        views.append(view)
    return views


def _first_addresses(conn: Connection, owner: Any, ids: list[Any], general: bool = False) -> dict[Any, str]:
    """The first (lowest id) address per owner id; `general`: only addresses of no contact."""
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return {}
    query = select(owner, _addr.c.address).where(owner.in_(wanted))
    if general:
        query = query.where(_addr.c.contact_id.is_(None))
    first: dict[Any, str] = {}
    for owner_id, address in conn.execute(query.order_by(_addr.c.id)):
        first.setdefault(owner_id, address)
    return first
