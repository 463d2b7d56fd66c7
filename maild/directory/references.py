"""Which third party a reference names (id, external id, exact name or mail address): many at once, few queries."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, Table, select

from maild.directory import fields
from maild.matchers.normalize import name_key
from maild.store.models import MailAddress, ThirdParty

_tp: Table = ThirdParty.__table__  # type: ignore[attr-defined]
_addr: Table = MailAddress.__table__  # type: ignore[attr-defined]
IN_LIMIT = 500  # values per `IN (...)`: well below SQLite's and PostgreSQL's parameter limits
T = TypeVar("T")


def resolve_ids(conn: Connection, refs: Iterable[str], *, by_id: bool = True) -> dict[str, int | Exception]:
    """For each ref, the id of the one third party it names (its numeric id unless by_id=False, its external id,
    its exact name, or a mail address of it or of one of its contacts), or the LookupError (none, several) or
    ValueError (not a valid address) saying why not."""
    out: dict[str, int | Exception] = {}
    pending: dict[str, str] = {}
    for ref in dict.fromkeys(refs):
        wanted = ref.strip()
        if wanted:
            pending[ref] = wanted
        else:
            out[ref] = LookupError("no third party named: the reference is empty")
    if by_id:
        numbers = _column_values(conn, _tp.c.id, _tp.c.id, [int(w) for w in pending.values() if w.isdigit()])
        _settle(out, pending, lambda wanted: [int(wanted)] if wanted.isdigit() and int(wanted) in numbers else [])
    by_ext = _column_values(conn, _tp.c.external_id, _tp.c.id, list(pending.values()))
    _settle(out, pending, lambda wanted: by_ext.get(wanted, []))
    keys = {ref: name_key(wanted) for ref, wanted in pending.items()}
    by_name = _column_values(conn, _tp.c.name_key, _tp.c.id, list(keys.values()))
    addresses: dict[str, str] = {}
    for ref, wanted in list(pending.items()):
        named = by_name.get(keys[ref], [])
        if named or "@" not in wanted:
            out[ref] = _one(wanted, named, by_id)
            del pending[ref]
            continue
        try:  # a mail address of the third party or of one of its contacts
            addresses[ref] = fields.address(wanted)
        except ValueError as exc:
            out[ref] = exc
            del pending[ref]
    owners = _column_values(conn, _addr.c.address, _addr.c.thirdparty_id, list(addresses.values()))
    for ref, wanted in pending.items():
        found = sorted(set(owners.get(addresses[ref], [])))
        if len(found) > 1:
            ids = ", ".join(f"#{i}" for i in found)
            out[ref] = LookupError(f"several third parties have the address {wanted!r} ({ids}): use the id")
        else:
            out[ref] = _one(wanted, found, by_id)
    return out


def _one(wanted: str, found: Sequence[int], by_id: bool) -> int | LookupError:
    if len(found) == 1:
        return found[0]
    if not found:
        how = "id, external id, name or mail address" if by_id else "external id, name or mail address"
        return LookupError(f"no third party with {how} {wanted!r}")
    ids = ", ".join(f"#{i}" for i in found)
    return LookupError(f"several third parties are named {wanted!r} ({ids}): use the id or the external id")


def _settle(out: dict[str, int | Exception], pending: dict[str, str], found_for: Any) -> None:
    """Move each pending ref that `found_for` finds exactly one third party for into `out`."""
    for ref, wanted in list(pending.items()):
        found = found_for(wanted)
        if len(found) == 1:
            out[ref] = found[0]
            del pending[ref]


def _column_values(conn: Connection, key: Any, value: Any, wanted: list[Any]) -> dict[Any, list[int]]:
    """key -> the values (ids) of the rows whose `key` is one of `wanted`, in id order."""
    found: dict[Any, list[int]] = {}
    for chunk in in_chunks(sorted(set(wanted))):
        for row_key, row_value in conn.execute(select(key, value).where(key.in_(chunk)).order_by(value)):
            found.setdefault(row_key, []).append(row_value)
    return found


def in_chunks(values: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), IN_LIMIT):
        yield values[start:start + IN_LIMIT]
