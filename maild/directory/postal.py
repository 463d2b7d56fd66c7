"""Postal addresses (third parties and contacts) and a contact's name parts for letters: fields and checks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from maild.directory import fields

POSTAL = ("street", "zip", "town", "country")  # on third parties and contacts
PERSON = ("salutation", "title", "first_name", "last_name")  # on contacts
_LIMITS = {"street": 200, "zip": 20, "town": 200, "country": 100, "salutation": 20, "title": 50,
           "first_name": 150, "last_name": 150}


def clean(values: Mapping[str, Any] | None, allowed: tuple[str, ...]) -> dict[str, str | None]:
    """The given fields, checked: None leaves a field as it is (left out), "" clears it (None). Unknown names
    and line breaks (an address line is one line) are errors."""
    out: dict[str, str | None] = {}
    for name, value in (values or {}).items():
        if name not in allowed:
            raise ValueError(f"unknown field {name!r}: use {', '.join(allowed)}")
        if value is None:
            continue
        text = fields.text(str(value), name.replace("_", " "), _LIMITS[name])
        if text is not None and any(ch in text for ch in "\r\n"):
            raise ValueError(f"{name.replace('_', ' ')} must be one line: {text[:40]!r}")
        out[name] = text
    return out
