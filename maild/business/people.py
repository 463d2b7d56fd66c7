"""Template views of directory records: a contact's first/last name, title and mail address; a third party's
postal address (from its custom fields) and general mail address. Used where mail is rendered."""

from __future__ import annotations

from collections.abc import Mapping
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
    first, last = split_name(contact.get("name"))
    email = conn.execute(select(_addr.c.address).where(_addr.c.contact_id == contact.get("id"))
                         .order_by(_addr.c.id).limit(1)).scalar()
    return {**contact, "first_name": first, "last_name": last, "title": contact.get("title") or "",
            "email": email or "", "phone": (contact.get("phones") or [""])[0], "role": contact.get("role") or ""}


def thirdparty_view(conn: Connection, thirdparty: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The third party's row plus street, zip, town, country (from custom fields, when present) and email
    (its first general address, or "")."""
    if thirdparty is None:
        return None
    custom = {str(k).strip().casefold(): v for k, v in (thirdparty.get("custom_fields") or {}).items()}
    view = dict(thirdparty)
    for key, names in ADDRESS_FIELDS.items():
        value = next((custom[n] for n in names if custom.get(n) not in (None, "")), None)
        if value is not None:
            view[key] = str(value)
    email = conn.execute(select(_addr.c.address).where(_addr.c.thirdparty_id == thirdparty.get("id"),
                                                       _addr.c.contact_id.is_(None))
                         .order_by(_addr.c.id).limit(1)).scalar()
    view["email"] = email or ""
    return view
