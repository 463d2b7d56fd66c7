"""Validated changes to directory records: what an add, upsert or import row asks for, after every check."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from maild.directory import fields, postal
from maild.matchers.normalize import name_key


@dataclass(frozen=True)
class ThirdPartyChanges:
    """On update None leaves a value as it is: `columns` holds only the given ones (name and name_key always)."""

    external_id: str | None
    columns: dict[str, Any]
    custom: dict[str, Any] | None  # merged key by key; an empty value removes its key
    domains: list[str] | None  # replace the stored ones
    addresses: list[str] | None  # general addresses (info@), replace the stored ones


@dataclass(frozen=True)
class ContactChanges:
    external_id: str | None
    thirdparty_id: int
    columns: dict[str, Any]
    addresses: list[str] | None


@dataclass(frozen=True)
class DocumentChanges:
    ref: str
    kind: str
    thirdparty_id: int


def thirdparty(*, external_id: str | None, name: str, kind: str | None, tags: Iterable[str] | None,
               custom_fields: Mapping[str, Any] | None, owner: str | None, language: str | None,
               domains: Iterable[str] | None, addresses: Iterable[str] | None,
               postal_address: Mapping[str, Any] | None = None) -> ThirdPartyChanges:
    clean_name = fields.text(name, "name", 300, required=True)
    assert clean_name is not None
    columns: dict[str, Any] = {"name": clean_name, "name_key": name_key(clean_name),
                               **postal.clean(postal_address, postal.POSTAL)}
    if kind is not None and kind.strip():
        columns["kind"] = fields.thirdparty_kind(kind)
    if tags is not None:
        columns["tags"] = fields.labels(tags, "tag")
    if owner is not None:
        columns["owner"] = fields.text(owner, "owner", 200)
    if language is not None:
        columns["language"] = fields.text(language, "language", 20)
    return ThirdPartyChanges(
        external_id=fields.text(external_id, "external id", 200),
        columns=columns,
        custom=None if custom_fields is None else fields.custom_fields(custom_fields),
        domains=None if domains is None else fields.domains(domains),
        addresses=None if addresses is None else fields.addresses(addresses),
    )


def contact(*, external_id: str | None, thirdparty_id: int, name: str, phones: Iterable[str] | None,
            role: str | None, language: str | None, addresses: Iterable[str] | None,
            letter: Mapping[str, Any] | None = None) -> ContactChanges:
    """`letter`: postal address and name parts (maild.directory.postal: POSTAL and PERSON)."""
    clean_name = fields.text(name, "name", 300, required=True)
    assert clean_name is not None
    columns: dict[str, Any] = {"name": clean_name, "name_key": name_key(clean_name),
                               **postal.clean(letter, postal.POSTAL + postal.PERSON)}
    if phones is not None:
        columns["phones"] = fields.labels(phones, "phone number", 50)
    if role is not None:
        columns["role"] = fields.text(role, "role", 200)
    if language is not None:
        columns["language"] = fields.text(language, "language", 20)
    return ContactChanges(external_id=fields.text(external_id, "external id", 200), thirdparty_id=thirdparty_id,
                          columns=columns, addresses=None if addresses is None else fields.addresses(addresses))


def document(*, ref: str, thirdparty_id: int, kind: str | None) -> DocumentChanges:
    clean_ref = fields.text(ref, "document reference", 100, required=True)
    assert clean_ref is not None
    return DocumentChanges(ref=clean_ref, kind=(fields.text(kind, "document kind", 40) or "invoice").lower(),
                           thirdparty_id=thirdparty_id)
