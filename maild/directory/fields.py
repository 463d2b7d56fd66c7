"""Checks and normal forms for directory input: every value passes through here before it is stored."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from email.utils import parseaddr
from typing import Any

from maild.matchers.normalize import normalize_address, normalize_domain

KINDS = ("customer", "supplier", "prospect", "other")
MULTI_SEPARATOR = ";"

_LOCAL = re.compile(r"[^\s@<>()\[\]\\,;:\"]+")
_DOMAIN = re.compile(r"(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def text(value: str | None, what: str, max_len: int, *, required: bool = False) -> str | None:
    """Stripped text, None when blank; ValueError when required and blank, or too long."""
    cleaned = (value or "").strip()
    if not cleaned:
        if required:
            raise ValueError(f"{what} is missing")
        return None
    if len(cleaned) > max_len:
        raise ValueError(f"{what} is longer than {max_len} characters: {cleaned[:40]!r}...")
    return cleaned


def thirdparty_kind(value: str) -> str:
    kind = value.strip().lower()
    if kind not in KINDS:
        raise ValueError(f"unknown kind {value.strip()!r}: use {', '.join(KINDS[:-1])} or {KINDS[-1]}")
    return kind


def domain(value: str) -> str:
    """`@Müller.Example.` -> `xn--mller-kva.example`."""
    normal = normalize_domain(value.strip().lstrip("@"))
    if normal is None or not _DOMAIN.fullmatch(normal):
        raise ValueError(f"not a valid domain: {value.strip()!r}")
    return normal


def address(value: str) -> str:
    """`Anna <Anna+Sales@Müller.example>` -> `anna@xn--mller-kva.example`."""
    raw = value.strip()
    if "<" in raw and not raw.startswith("<"):
        raw = parseaddr(raw)[1] or raw
    normal = normalize_address(raw)
    if normal is not None:
        local, _, host = normal.rpartition("@")
        if _LOCAL.fullmatch(local) and _DOMAIN.fullmatch(host):
            return normal
    raise ValueError(f"not a valid mail address: {value.strip()!r}")


def domains(values: Iterable[str]) -> list[str]:
    return _unique(domain(v) for v in values if v.strip())


def addresses(values: Iterable[str]) -> list[str]:
    return _unique(address(v) for v in values if v.strip())


def labels(values: Iterable[str], what: str, max_len: int = 100) -> list[str]:
    """Tags or phone numbers: stripped, blanks dropped, duplicates removed, no `;` (the CSV separator)."""
    out = []
    for value in values:
        cleaned = text(value, what, max_len)
        if cleaned is None:
            continue
        if MULTI_SEPARATOR in cleaned:
            raise ValueError(f"{what} {cleaned!r} contains {MULTI_SEPARATOR!r}, which separates values in CSV")
        out.append(cleaned)
    return _unique(out)


def custom_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """Keys stripped and non-empty; a value of None or "" means "no such field" (removes it on update)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = str(key).strip()
        if not name:
            raise ValueError("a custom field needs a name")
        out[name] = value.strip() if isinstance(value, str) else value
    return out


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))
