"""Checks and normal forms for business input (amounts, dates, times, statuses), like maild.directory.fields."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

CENT = Decimal("0.01")
MAX_AMOUNT = Decimal("999999999999.99")  # Numeric(14, 2)
INVOICE_STATUSES = ("open", "paid", "disputed", "paused", "cancelled")
_CURRENCY = re.compile(r"[A-Z]{3}")
_GROUPS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+")


def amount(value: Any, what: str = "amount", *, allow_zero: bool = True) -> Decimal:
    """A money amount with at most two decimals, not negative: `1234.5`, `1234,50`, `1.234,50`, `1,234.50`.

    ValueError on anything else (garbage, NaN, negative, more than two decimals, too large).
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{what} is missing" if value is None else f"{what} is not an amount: {value!r}")
    if isinstance(value, Decimal | int):
        number = Decimal(value)
    else:
        text = str(value).strip().replace("\u00a0", "").replace("\u202f", "")
        if not text:
            raise ValueError(f"{what} is missing")
        number = _parse_number(text, what)
    if not number.is_finite():
        raise ValueError(f"{what} is not an amount: {value!r}")
    if number < 0:
        raise ValueError(f"{what} must not be negative: {value!r}")
    if not allow_zero and number == 0:
        raise ValueError(f"{what} must be more than zero")
    if number != number.quantize(CENT):
        raise ValueError(f"{what} has more than two decimals: {value!r}")
    if number > MAX_AMOUNT:
        raise ValueError(f"{what} is too large: {value!r}")
    return number.quantize(CENT)


def number(value: Any, what: str) -> Decimal:
    """A non-negative decimal (a quantity, a VAT rate), any precision."""
    try:
        result = Decimal(str(value).strip().replace(",", "."))
    except InvalidOperation:
        raise ValueError(f"{what} is not a number: {value!r}") from None
    if not result.is_finite() or result < 0:
        raise ValueError(f"{what} must be a number of zero or more: {value!r}")
    return result


def currency(value: str | None, default: str = "EUR") -> str:
    code = (value or "").strip().upper() or default
    if not _CURRENCY.fullmatch(code):
        raise ValueError(f"not a currency code: {value!r} (three letters, such as EUR or USD)")
    return code


def day(value: Any, what: str) -> date:
    """A date: a date object or ISO `YYYY-MM-DD`."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value or "").strip()
    if not text:
        raise ValueError(f"{what} is missing")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{what} is not a date: {text!r} (use YYYY-MM-DD)") from None


def moment(value: Any, what: str, zone: str | tzinfo = "UTC") -> datetime:
    """A point in time, in UTC: ISO 8601 with an offset (`2026-11-19T14:00+01:00`, `...Z`), or a local time
    without one, read in `zone` (config.rules.timezone)."""
    if isinstance(value, datetime):
        parsed = value
    else:
        text = str(value or "").strip()
        if not text:
            raise ValueError(f"{what} is missing")
        try:
            parsed = datetime.fromisoformat(text.replace(" ", "T", 1) if "T" not in text else text)
        except ValueError:
            raise ValueError(f"{what} is not a time: {text!r} (use ISO 8601 such as 2026-11-19T14:00+01:00)") from None
    if parsed.tzinfo is None:
        local = ZoneInfo(zone) if isinstance(zone, str) else zone
        parsed = parsed.replace(tzinfo=local)
    return parsed.astimezone(UTC)


def invoice_status(value: str) -> str:
    status = (value or "").strip().lower()
    if status not in INVOICE_STATUSES:
        raise ValueError(f"unknown invoice status {value!r}: use {', '.join(INVOICE_STATUSES)}")
    return status


def _parse_number(text: str, what: str) -> Decimal:
    """`1234.5`, `1234,50`, `1.234,50`, `1,234.50`, `1 234,50`, `1'234.50`; one lone separator is the decimal one."""
    cleaned = re.sub(r"[ ']", "", text)
    if "." in cleaned and "," in cleaned:
        decimal_sep = "." if cleaned.rfind(".") > cleaned.rfind(",") else ","
        group_sep = "," if decimal_sep == "." else "."
        whole, _, fraction = cleaned.rpartition(decimal_sep)
        if not _GROUPS.fullmatch(whole.replace(group_sep, ",")):
            raise ValueError(f"{what} is not an amount: {text!r}")
        cleaned = whole.replace(group_sep, "") + "." + fraction
    else:
        sep = "," if "," in cleaned else "."
        if cleaned.count(sep) > 1:
            if not _GROUPS.fullmatch(cleaned.replace(sep, ",")):
                raise ValueError(f"{what} is not an amount: {text!r}")
            cleaned = cleaned.replace(sep, "")
        cleaned = cleaned.replace(",", ".")
    if not re.fullmatch(r"[+-]?\d*\.?\d+|[+-]?\d+\.", cleaned):
        raise ValueError(f"{what} is not an amount: {text!r}")
    return Decimal(cleaned)


def find_row(conn: Any, table: Any, key_column: Any, ref: str, what: str) -> Any:
    """The row of `table` whose `key_column` is `ref`; or, for `#12` or a number that is no key, the one with
    that id. LookupError (naming `what`) when there is none."""
    wanted = (ref or "").strip()
    if not wanted:
        raise LookupError(f"no {what} named: the reference is empty")
    row = conn.execute(select(table).where(key_column == wanted)).first()
    key = wanted.removeprefix("#")
    if row is None and key.isdigit():
        row = conn.execute(select(table).where(table.c.id == int(key))).first()
    if row is None:
        raise LookupError(f"no {what} {wanted!r}")
    return row
