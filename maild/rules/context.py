"""What an expression sees: the records of a rule's subject as plain dicts, and the helper functions.

Records are loaded with Core SQL, several subjects at once (`Directory.load` takes every third party of a
sweep's candidates in one query per table), and turned into dicts whose keys are the names rule files use
(`thirdparty.name`, `invoice.due_on`, `contact.address`). The helpers of `maild.rules.model.FUNCTIONS` are
closures over one subject (`Scope`); time comes from the engine's clock, never from the wall.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import nodes
from sqlalchemy import ARRAY, Connection, Text, any_, bindparam, cast, exists, func, literal_column, or_, select
from sqlalchemy.sql.elements import ColumnElement

from maild.business.invoices import invoice_context
from maild.clock import as_utc
from maild.config import Config
from maild.matchers.normalize import normalize_address
from maild.own_mail import OwnMail
from maild.rules.durations import parse_duration
from maild.rules.expressions import Expression, TextTemplate
from maild.rules.model import FUNCTIONS, Rule
from maild.store.models import (
    Contact,
    Event,
    MailAddress,
    Meeting,
    Message,
    MessageMatch,
    OutboxMessage,
    RuleLedger,
    ThirdParty,
)
from maild.templates.render import TEXT_ENV

_tp, _c, _a = ThirdParty.__table__, Contact.__table__, MailAddress.__table__
_m, _mm, _ob, _ev, _mt = Message.__table__, MessageMatch.__table__, OutboxMessage.__table__, Event.__table__, \
    Meeting.__table__
_led = RuleLedger.__table__
DECIDED = ("matched", "assigned")
# Mail that failed authentication (a forged sender) is no reply of the customer and no mail of ours.
AUTHENTIC = or_(_m.c.auth.is_(None), _m.c.auth != "fail")
# Mail a person wrote (maild/classify): out-of-office replies, bounces, list mail and notifications are no reply.
# No kind: classification is off (every mail is a person's), or mail stored before classification existed that the
# backfill has not reached yet (maild/classify/backfill.py, newest first): counted as a person's, the cautious side
# for reminders (a possible answer pauses one rather than one going to someone who may have answered).
# docs/machine-mail.md, "Mail stored before classification".
HUMAN = or_(_m.c.kind.is_(None), _m.c.kind == "human")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CHUNK = 900  # ids per IN (...) list
ZERO = Decimal("0.00")


# --- record views --------------------------------------------------------------------------------


def thirdparty_view(row: Any, addresses: list[str]) -> dict[str, Any]:
    return _thirdparty(row.id, row.name, row.kind, row.external_id, row.tags, row.custom_fields, row.owner,
                       row.language, addresses)


def _thirdparty(id_: int, name: str, kind: str, external_id: str | None, tags: Any, fields: Any, owner: str | None,
                language: str | None, addresses: list[str]) -> dict[str, Any]:
    return {"id": id_, "name": name, "kind": kind, "external_id": external_id, "tags": list(tags or []),
            "fields": dict(fields or {}), "owner": owner, "language": language,
            "address": addresses[0] if addresses else None, "addresses": addresses}


def contact_view(row: Any, addresses: list[str]) -> dict[str, Any]:
    return _contact(row.id, row.thirdparty_id, row.name, row.role, row.language, row.phones, row.external_id,
                    addresses)


def _contact(id_: int, thirdparty_id: int, name: str, role: str | None, language: str | None, phones: Any,
             external_id: str | None, addresses: list[str]) -> dict[str, Any]:
    return {"id": id_, "thirdparty_id": thirdparty_id, "name": name, "role": role, "language": language,
            "phones": list(phones or []), "external_id": external_id,
            "address": addresses[0] if addresses else None, "addresses": addresses}


def _json(text: str | None) -> Any:
    """A JSON column selected as text, decoded as the column type would (most are `[]` or `{}`)."""
    if text is None:
        return None
    if text == "[]":
        return []
    if text == "{}":
        return {}
    return json.loads(text)


def _as_text(column: Any) -> Any:
    return cast(column, Text).label(column.name)


# What `Directory.load` selects, in the order of `_thirdparty` / `_contact`: JSON as text (see `_json`), no
# timestamps (parsed for nothing).
_THIRDPARTY_COLUMNS = (_tp.c.id, _tp.c.name, _tp.c.kind, _tp.c.external_id, _as_text(_tp.c.tags),
                       _as_text(_tp.c.custom_fields), _tp.c.owner, _tp.c.language)
_CONTACT_COLUMNS = (_c.c.id, _c.c.thirdparty_id, _c.c.name, _c.c.role, _c.c.language, _as_text(_c.c.phones),
                    _c.c.external_id)


def invoice_view(conn: Connection, row: Any) -> dict[str, Any]:
    """The business module's view (`invoice_context`: amount_due, lines, totals ...), so templates and rules read
    the same names. An invoice without lines gets the same dict built directly from the row (a sweep builds
    thousands; tests/rules/test_context.py keeps the two equal)."""
    view = invoice_context(conn, row) if row.lines else _plain_invoice_view(row)
    view["created_at"] = as_utc(row.created_at)
    return view


# What a sweep selects of an invoice, in this order (`swept_invoice_view` unpacks it): every column
# `invoice_view` reads but `lines` (JSON, decoded for nothing when an invoice has none), then `has_lines`
# (whether it may have some: then the full view is loaded).
INVOICE_SWEEP_COLUMNS = ("id", "ref", "thirdparty_id", "contact_id", "issued_on", "due_on", "currency", "amount",
                         "paid_amount", "status", "dunning_level", "dunning_repeats", "last_dunned_at", "late_fees",
                         "paid_at", "created_at")


def swept_invoice_view(conn: Connection, row: Any) -> dict[str, Any]:
    """`invoice_view` of a row of INVOICE_SWEEP_COLUMNS and `has_lines`: the same dict (built from the row's
    tuple: a sweep builds thousands)."""
    (id_, ref, tp_id, contact_id, issued, due, currency, amount, paid, status, level, repeats, last, fees, paid_at,
     created, has_lines) = row
    if has_lines:
        view = invoice_context(conn, int(id_))
    else:
        if type(issued) is str:  # read as text (candidates(text_times=True)): ISO dates
            issued, due = date.fromisoformat(issued), date.fromisoformat(due)
        paid = paid or ZERO
        fees = fees or ZERO
        view = {"id": id_, "ref": ref, "thirdparty_id": tp_id, "contact_id": contact_id, "date": issued,
                "issued_on": issued, "due_on": due, "due_date": due, "currency": currency, "amount": amount,
                "paid_amount": paid, "amount_paid": paid, "late_fees": fees, "amount_due": amount - paid + fees,
                "total": amount, "total_net": amount, "total_vat": ZERO, "lines": [], "status": status,
                "dunning_level": level or 0, "dunning_repeats": repeats or 0, "last_dunned_at": _utc(last),
                "paid_at": _utc(paid_at)}
    view["created_at"] = _utc(created)
    return view


def _utc(value: datetime | str | None) -> datetime | None:
    """`as_utc` of a datetime column's value, also when read as SQLite's stored text (`candidates(text_times=
    True)`): SQLAlchemy would parse it with `datetime.fromisoformat` and `as_utc` would add UTC; parsed here with
    the offset at once (the same value, a third of the time); text that has an offset already goes the long way."""
    if value is None:
        return None
    if type(value) is str:
        try:
            return datetime.fromisoformat(value + "+00:00")
        except ValueError:
            return as_utc(datetime.fromisoformat(value))
    return as_utc(value)  # type: ignore[arg-type]


def _plain_invoice_view(row: Any) -> dict[str, Any]:
    amount, paid, fees = row.amount, row.paid_amount or ZERO, row.late_fees or ZERO
    issued, due = row.issued_on, row.due_on
    return {"id": row.id, "ref": row.ref, "thirdparty_id": row.thirdparty_id, "contact_id": row.contact_id,
            "date": issued, "issued_on": issued, "due_on": due, "due_date": due, "currency": row.currency,
            "amount": amount, "paid_amount": paid, "amount_paid": paid, "late_fees": fees,
            "amount_due": amount - paid + fees, "total": amount, "total_net": amount, "total_vat": ZERO,
            "lines": [], "status": row.status, "dunning_level": row.dunning_level or 0,
            "dunning_repeats": row.dunning_repeats or 0, "last_dunned_at": as_utc(row.last_dunned_at),
            "paid_at": as_utc(row.paid_at)}


def meeting_view(row: Any) -> dict[str, Any]:
    return {"id": row.id, "uid": row.uid, "thirdparty_id": row.thirdparty_id, "subject": row.subject,
            "location": row.location, "start_at": as_utc(row.start_at), "end_at": as_utc(row.end_at),
            "organizer": row.organizer, "attendees": [dict(a) for a in row.attendees or []],
            "next_steps": list(row.next_steps or []), "status": row.status, "owner": row.owner,
            "message_id": row.message_id}


def known_attendees(attendees: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The external attendees whose address is in the directory (a third party's contact or general address):
    the `attendees` of a meeting rule, and the only attendees a rule mails. An invitation may name anyone;
    those are recorded on the meeting, never written to."""
    return [dict(a) for a in attendees if not a.get("internal") and a.get("thirdparty_id") is not None]


def is_unknown_attendee(target: Any) -> bool:
    """An attendee dict (it has `internal`) of no third party: someone an invitation named, not our contact."""
    return isinstance(target, dict) and "internal" in target and target.get("thirdparty_id") is None


def message_view(row: Any) -> dict[str, Any]:
    return {"id": row.id, "message_id": row.header_message_id, "subject": row.subject or "",
            "from": row.from_addr, "from_name": row.from_name, "to": [p[1] for p in row.to_addrs or []],
            "cc": [p[1] for p in row.cc_addrs or []], "date": as_utc(row.date), "in_reply_to": row.in_reply_to,
            "references": list(row.references or []), "body": row.text_body or "",
            "kind": getattr(row, "kind", None) or "human"}


def event_view(row: Any, type_: str | None = None) -> dict[str, Any]:
    return {"id": row.id, "type": type_ or row.type, "occurred_at": as_utc(row.occurred_at),
            "thirdparty_id": row.thirdparty_id, "message_id": row.message_id, "data": dict(row.data or {})}


def rule_view(rule: Rule) -> dict[str, Any]:
    return {"name": rule.name, "file": rule.file, "description": rule.description}


# --- loading ---------------------------------------------------------------------------------------


def chunks(values: Iterable[Any], size: int = CHUNK) -> Iterable[list[Any]]:
    items = list(values)
    for start in range(0, len(items), size):
        yield items[start:start + size]


def any_of(conn: Connection, column: Any, values: list[Any]) -> ColumnElement[bool]:
    """`column IN (values)` as ONE bound parameter, for the id lists of a sweep (thousands; SQLAlchemy binds an
    IN list value by value): `= ANY(array)` on PostgreSQL, `IN (SELECT value FROM json_each(json))` on SQLite.
    `values`: ints or strings."""
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))  # type: ignore[no-any-return]
    listed = select(literal_column("value")).select_from(func.json_each(bindparam(None, json.dumps(list(values)))))
    return column.in_(listed)  # type: ignore[no-any-return]


@dataclass
class Directory:
    """Third parties with their contacts (and addresses) for a set of ids, loaded in bulk, kept for one pass.

    Actions that change a third party update the cached dict too, so later subjects of the same pass see it.
    """

    thirdparties: dict[int, dict[str, Any]] = field(default_factory=dict)
    contacts: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # by third party, in id order
    contact_by_id: dict[int, dict[str, Any]] = field(default_factory=dict)

    def load(self, conn: Connection, thirdparty_ids: Iterable[int | None]) -> None:
        known = self.thirdparties
        wanted = sorted({i for i in thirdparty_ids if i is not None and i not in known})
        if not wanted:
            return
        addresses: dict[tuple[int, int | None], list[str]] = {}
        for tp_id, contact_id, address in conn.execute(
                select(_a.c.thirdparty_id, _a.c.contact_id, _a.c.address)
                .where(any_of(conn, _a.c.thirdparty_id, wanted)).order_by(_a.c.id)).all():
            found = addresses.get((tp_id, contact_id))
            if found is None:
                addresses[(tp_id, contact_id)] = [address]
            else:
                found.append(address)
        contacts, by_id = self.contacts, self.contact_by_id
        for tp_id in wanted:
            contacts[tp_id] = []
        for id_, tp_id, name, role, language, phones, external_id in conn.execute(
                select(*_CONTACT_COLUMNS).where(any_of(conn, _c.c.thirdparty_id, wanted)).order_by(_c.c.id)).all():
            view = _contact(id_, tp_id, name, role, language, _json(phones), external_id,
                            addresses.get((tp_id, id_), []))
            contacts[tp_id].append(view)
            by_id[id_] = view
        for id_, name, kind, external_id, tags, fields, owner, language in conn.execute(
                select(*_THIRDPARTY_COLUMNS).where(any_of(conn, _tp.c.id, wanted))).all():
            general = addresses.get((id_, None))
            if not general:
                first = next((c["address"] for c in contacts[id_] if c["address"]), None)
                general = [first] if first else []
            known[id_] = _thirdparty(id_, name, kind, external_id, _json(tags), _json(fields), owner, language,
                                     general)

    def thirdparty(self, thirdparty_id: int | None) -> dict[str, Any] | None:
        return self.thirdparties.get(thirdparty_id) if thirdparty_id is not None else None

    def contact(self, thirdparty_id: int | None, contact_id: int | None = None) -> dict[str, Any] | None:
        """The given contact when it belongs to the third party; else its first contact with an address."""
        if contact_id is not None and contact_id in self.contact_by_id:
            return self.contact_by_id[contact_id]
        if thirdparty_id is None:
            return None
        contacts = self.contacts.get(thirdparty_id)
        if not contacts:
            return None
        for contact in contacts:
            if contact["address"]:
                return contact
        return contacts[0]


@dataclass
class Replies:
    """The newest inbound mail (matched or assigned to the third party, not from us) per third party: mail people
    wrote (`kinds` None), or machine mail of the given kinds (`("auto_reply",)` for auto_replied_since)."""

    own: OwnMail
    latest: dict[int, datetime | None] = field(default_factory=dict)
    kinds: tuple[str, ...] | None = None

    def load(self, conn: Connection, thirdparty_ids: Iterable[int | None]) -> None:
        wanted = sorted({i for i in thirdparty_ids if i is not None and i not in self.latest})
        if not wanted:
            return
        when = func.coalesce(_m.c.date, _m.c.ingested_at)
        latest = self.latest
        for tp_id in wanted:
            latest[tp_id] = None
        rows = conn.execute(
            select(_mm.c.thirdparty_id, _m.c.from_addr, func.max(when).label("at"))
            .select_from(_mm.join(_m, _m.c.id == _mm.c.message_id))
            .where(any_of(conn, _mm.c.thirdparty_id, wanted), _mm.c.status.in_(DECIDED), AUTHENTIC,
                   HUMAN if self.kinds is None else _m.c.kind.in_(self.kinds))
            .group_by(_mm.c.thirdparty_id, _m.c.from_addr)).all()
        for tp_id, sender, at in rows:
            if at is None or self.own.is_own(sender):
                continue
            at = _as_datetime(at)
            best = latest.get(tp_id)
            if best is None or at > best:
                latest[tp_id] = at

    def since(self, thirdparty_id: int | None, moment: datetime | None) -> bool:
        if thirdparty_id is None:
            return False
        latest = self.latest.get(thirdparty_id)
        return latest is not None and (moment is None or latest > moment)


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, str):  # SQLite hands back the stored text when an aggregate hides the column type
        value = datetime.fromisoformat(value)
    result = as_utc(value)
    assert result is not None
    return result


# --- helpers ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clock:
    """`now` (UTC) and the rules' time zone, for `today`, day counts and business hours (one reading per pass:
    `local` and `today` are worked out once)."""

    now: datetime
    zone: ZoneInfo
    days: frozenset[str]
    start: time
    end: time | None  # None: 24:00
    _midnights: dict[date, datetime] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def of(cls, config: Config, now: datetime, timezone: str | None = None) -> Clock:
        hours = config.rules.business_hours
        end = None if hours.end == "24:00" else time.fromisoformat(hours.end)
        return cls(as_utc(now) or now, ZoneInfo(timezone or config.rules.timezone), frozenset(hours.days),
                   time.fromisoformat(hours.start), end)

    @cached_property
    def local(self) -> datetime:
        return self.now.astimezone(self.zone)

    @cached_property
    def today(self) -> date:
        return self.local.date()

    def moment(self, value: date | datetime | str | None) -> datetime | None:
        """A datetime (UTC) for a datetime, or the local start of a date."""
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value) if "T" in value or " " in value else date.fromisoformat(value)
        if isinstance(value, datetime):
            return as_utc(value)
        found = self._midnights.get(value)
        if found is None:
            found = self._midnights[value] = datetime.combine(value, time(0), self.zone).astimezone(self.now.tzinfo)
        return found

    def days_since(self, value: date | datetime | None) -> int:
        if value is None:
            raise ValueError("days_since() of nothing (the date is empty)")
        if isinstance(value, datetime):
            return (self.now - (as_utc(value) or value)) // timedelta(days=1)
        return (self.today - value).days

    def business_hours(self) -> bool:
        local = self.local
        if WEEKDAYS[local.weekday()] not in self.days:
            return False
        now = local.time().replace(tzinfo=None)
        return self.start <= now and (self.end is None or now < self.end)


@dataclass
class Scope:
    """One subject's records, for the helper functions."""

    clock: Clock
    conn: Connection
    own: OwnMail
    replies: Replies
    directory: Directory
    thirdparty: dict[str, Any] | None = None
    invoice: dict[str, Any] | None = None
    auto_replies: Replies = field(default_factory=lambda: Replies(OwnMail(), kinds=("auto_reply",)))
    # The addresses whose mail does not arrive (normalised), read once per scope (a sweep: once per rule) for
    # `undeliverable()`: a query per candidate cost a sweep over 100,000 invoices 25 times its time.
    undeliverable: frozenset[str] | None = None

    def undeliverable_addresses(self) -> frozenset[str]:
        if self.undeliverable is None:
            from maild.bounces.health import UNDELIVERABLE, H

            self.undeliverable = frozenset(
                self.conn.execute(select(H.c.address).where(H.c.state == UNDELIVERABLE)).scalars())
        return self.undeliverable


def helpers(scope: Scope) -> dict[str, Callable[..., Any]]:
    clock = scope.clock

    def days_since(value: date | datetime | None) -> int:
        return clock.days_since(value)

    def days_until(value: date | datetime | None) -> int:
        if value is None:
            raise ValueError("days_until() of nothing (the date is empty)")
        return -clock.days_since(value)

    def need_invoice(name: str) -> dict[str, Any]:
        if scope.invoice is None:
            raise ValueError(f"{name}() needs an invoice, and this rule's subject has none")
        return scope.invoice

    def days_overdue() -> int:
        due = need_invoice("days_overdue")["due_on"]
        return max(0, (clock.today - due).days)

    def amount_due() -> Decimal:
        invoice = need_invoice("amount_due")
        amount, paid, fees = invoice["amount"], invoice["paid_amount"], invoice["late_fees"]
        if type(amount) is Decimal and type(paid) is Decimal and type(fees) is Decimal:  # Decimal(d) is d's value
            return amount - paid + fees
        return Decimal(amount) - Decimal(paid) + Decimal(fees)

    def replied_since(moment: date | datetime | None = None) -> bool:
        tp = scope.thirdparty
        if tp is None:
            return False
        if tp["id"] not in scope.replies.latest:
            scope.replies.load(scope.conn, [tp["id"]])
        return scope.replies.since(tp["id"], clock.moment(moment))

    def auto_replied_since(moment: date | datetime | None = None) -> bool:
        tp = scope.thirdparty
        if tp is None:
            return False
        replies = scope.auto_replies
        if tp["id"] not in replies.latest:
            replies.load(scope.conn, [tp["id"]])
        return replies.since(tp["id"], clock.moment(moment))

    def undeliverable(target: Any) -> bool:
        targets = target if isinstance(target, list | tuple) else [target]
        addresses = [a for a in (address_of(t) for t in targets) if a]
        if not addresses:
            return False
        dead = scope.undeliverable_addresses()
        return bool(dead) and any(normalize_address(a) in dead for a in addresses)

    def wrote_to_(address: Any, moment: date | datetime | None = None) -> bool:
        return wrote_to(scope.conn, scope.own, address, clock.moment(moment))

    def has_tag(name: str) -> bool:
        tags = (scope.thirdparty or {}).get("tags") or []
        wanted = str(name).casefold()
        return any(str(tag).casefold() == wanted for tag in tags)

    def contact_with_role(role: str) -> dict[str, Any] | None:
        tp = scope.thirdparty
        if tp is None:
            return None
        if tp["id"] not in scope.directory.contacts:
            scope.directory.load(scope.conn, [tp["id"]])
        wanted = str(role).casefold()
        for contact in scope.directory.contacts.get(tp["id"], ()):
            if (contact["role"] or "").casefold() == wanted:
                return contact
        return None

    def duration(text: str) -> timedelta:
        return parse_duration(text)

    return {"days_since": days_since, "days_until": days_until, "days_overdue": days_overdue,
            "amount_due": amount_due, "replied_since": replied_since, "wrote_to": wrote_to_, "has_tag": has_tag,
            "business_hours": clock.business_hours, "contact_with_role": contact_with_role, "duration": duration,
            "auto_replied_since": auto_replied_since, "undeliverable": undeliverable}


def address_of(value: Any) -> str | None:
    """An address string, or the `address` of a contact/third party/attendee dict."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, dict):
        address = value.get("address")
        return address.strip() if isinstance(address, str) and address.strip() else None
    return None


def wrote_to(conn: Connection, own: OwnMail, target: Any, moment: datetime | None) -> bool:
    """We (the outbox, or a colleague's mail seen in an ingested folder) wrote to `target` after `moment`; for a
    list (such as `attendees`), to any of them. Mail a rule sent (a reminder, a notice) does not count: a person of
    us was in contact, or not."""
    if isinstance(target, list | tuple):
        return any(wrote_to(conn, own, item, moment) for item in target)
    address = normalize_address(address_of(target))
    if address is None:
        raise ValueError(f"wrote_to(): {target!r} is not a mail address")
    # A cheap text prefilter on the domain (JSON text; only when plain ASCII), then the exact check in Python.
    domain = address.rpartition("@")[2]
    pattern = "%@" + domain.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    # Mail a rule sent (a reminder, a notice) is no contact by one of us: only what a person sent counts.
    by_rule = exists().where(or_(_led.c.key == _ob.c.idempotency_key,
                                 _ob.c.idempotency_key.like(_led.c.key + "/%")))
    query = select(_ob.c.recipients).where(_ob.c.status.not_in(("cancelled", "failed")), ~by_rule)
    if domain.isascii():
        query = query.where(func.lower(cast(_ob.c.recipients, Text)).like(pattern, escape="\\"))
    if moment is not None:
        query = query.where(_ob.c.created_at > moment)
    for (recipients,) in conn.execute(query):
        if any(normalize_address(r) == address for r in recipients or []):
            return True
    when = func.coalesce(_m.c.date, _m.c.ingested_at)
    query = select(_m.c.from_addr, _m.c.to_addrs, _m.c.cc_addrs).where(AUTHENTIC)
    if domain.isascii():
        query = query.where(func.lower(cast(_m.c.to_addrs, Text)).like(pattern, escape="\\")
                            | func.lower(cast(_m.c.cc_addrs, Text)).like(pattern, escape="\\"))
    if moment is not None:
        query = query.where(when > moment)
    for sender, to, cc in conn.execute(query):
        if own.is_own(sender) and any(normalize_address(p[1]) == address for p in [*(to or []), *(cc or [])]):
            return True
    return False


# --- evaluation ----------------------------------------------------------------------------------------


class _Fallback(Exception):
    """The fast path cannot decide: let Jinja evaluate (and report any error in its words)."""


_DICT_ATTRIBUTES = frozenset(dir(dict))
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "lteq": operator.le, "gt": operator.gt,
    "gteq": operator.ge, "in": lambda a, b: a in b, "notin": lambda a, b: a not in b,
}
# Not `*` or `**`: the sandbox limits those (a huge repeated string), so they stay with Jinja.
_BINARY: dict[type, Callable[[Any, Any], Any]] = {nodes.Add: lambda a, b: a + b, nodes.Sub: lambda a, b: a - b}
Compiled = Callable[[Mapping[str, Any]], Any]


class Evaluator:
    """Evaluates rule expressions with the result `Expression.evaluate` gives, faster.

    Jinja builds a new context from every name on each call, so each expression gets only the names it uses.
    Simple expressions (names, constants, `record.field` on dicts, comparisons, and/or/not, + and -, lists,
    calls of the helpers; not `*`, which the sandbox limits) also run as a Python closure with Jinja's
    semantics for those nodes (Jinja compiles them to the same Python operators); anything the closure cannot
    decide -- an attribute that is not a dict key, any exception -- is evaluated by Jinja instead, so errors
    read exactly as they would.
    """

    def __init__(self) -> None:
        self._cache: dict[int, tuple[Any, Compiled | None, tuple[str, ...]]] = {}

    def _entry(self, item: Expression | TextTemplate) -> tuple[Any, Compiled | None, tuple[str, ...]]:
        found = self._cache.get(id(item))
        if found is None or found[0] is not item:
            used = set(item.names) | set(getattr(item, "functions", ()))
            fast = _compile(item.source) if isinstance(item, Expression) else _compile_text(item.source)
            found = (item, fast, tuple(sorted(used)))
            self._cache[id(item)] = found
        return found

    def value(self, expression: Expression, names: Mapping[str, Any]) -> Any:
        found = self._cache.get(id(expression))
        if found is None or found[0] is not expression:
            found = self._entry(expression)
        fast = found[1]
        if fast is not None:
            try:
                return fast(names)
            except Exception:
                pass
        return expression.evaluate({name: names[name] for name in found[2] if name in names})

    def function(self, expression: Expression) -> Compiled:
        """`value(expression, names)` as a function of the names, for a loop over many subjects (one lookup)."""
        _, fast, used = self._entry(expression)

        def slow(names: Mapping[str, Any]) -> Any:
            return expression.evaluate({name: names[name] for name in used if name in names})
        if fast is None:
            return slow

        def value(names: Mapping[str, Any]) -> Any:
            try:
                return fast(names)
            except Exception:
                pass
            return slow(names)
        return value

    def text(self, template: TextTemplate, names: Mapping[str, Any]) -> str:
        _, fast, used = self._entry(template)
        if fast is not None:
            try:
                return fast(names)  # type: ignore[no-any-return]
            except Exception:
                pass
        return template.render({name: names[name] for name in used if name in names})


def _compile(source: str) -> Compiled | None:
    try:
        body = TEXT_ENV.parse("{{ " + source + " }}").body
    except Exception:
        return None
    if len(body) != 1 or not isinstance(body[0], nodes.Output) or len(body[0].nodes) != 1:
        return None
    return _closure(body[0].nodes[0])


def _compile_text(source: str) -> Compiled | None:
    """A text template of plain text and `{{ expression }}` outputs (no tags, no filters): what Jinja renders
    for it (`str()` of each value, autoescape off), as a closure; None for anything else."""
    try:
        body = TEXT_ENV.parse(source).body
    except Exception:
        return None
    parts: list[str | Compiled] = []
    for output in body:
        if not isinstance(output, nodes.Output):
            return None
        for node in output.nodes:
            if isinstance(node, nodes.TemplateData):
                parts.append(node.data)
                continue
            closure = _closure(node)
            if closure is None:
                return None
            parts.append(closure)
    pieces = tuple(parts)

    def render(names: Mapping[str, Any]) -> str:
        return "".join([part if type(part) is str else str(part(names)) for part in pieces])  # type: ignore[operator]
    return render


def _closure(node: nodes.Node) -> Compiled | None:
    if isinstance(node, nodes.Const):
        constant = node.value
        return lambda names: constant
    if isinstance(node, nodes.Name) and node.ctx == "load":
        name = node.name

        def load(names: Mapping[str, Any]) -> Any:
            try:
                return names[name]
            except KeyError:
                raise _Fallback(name) from None
        return load
    if isinstance(node, nodes.Getattr):
        attr = node.attr
        if attr.startswith("_") or attr in _DICT_ATTRIBUTES:
            return None
        if isinstance(node.node, nodes.Name) and node.node.ctx == "load":  # `record.field`, the common case
            name = node.node.name

            def field_of(names: Mapping[str, Any]) -> Any:
                try:
                    value = names[name]
                    if type(value) is dict:
                        return value[attr]
                except KeyError:
                    pass
                raise _Fallback(attr)
            return field_of
        inner = _closure(node.node)
        if inner is None:
            return None

        def get(names: Mapping[str, Any]) -> Any:
            value = inner(names)
            if type(value) is not dict or attr not in value:
                raise _Fallback(attr)
            return value[attr]
        return get
    if isinstance(node, nodes.List | nodes.Tuple):
        items = [_closure(item) for item in node.items]
        if any(item is None for item in items):
            return None
        parts = tuple(items)
        as_list = isinstance(node, nodes.List)
        return lambda names: ([p(names) for p in parts] if as_list  # type: ignore[misc]
                              else tuple(p(names) for p in parts))  # type: ignore[misc]
    if isinstance(node, nodes.Not):
        inner = _closure(node.node)
        return None if inner is None else (lambda names: not inner(names))
    if isinstance(node, nodes.And | nodes.Or):
        left, right = _closure(node.left), _closure(node.right)
        if left is None or right is None:
            return None
        if isinstance(node, nodes.And):
            return lambda names: left(names) and right(names)
        return lambda names: left(names) or right(names)
    if type(node) in _BINARY:
        left, right = _closure(node.left), _closure(node.right)  # type: ignore[attr-defined]
        operate = _BINARY[type(node)]
        if left is None or right is None:
            return None
        return lambda names: operate(left(names), right(names))
    if isinstance(node, nodes.Neg):
        inner = _closure(node.node)
        return None if inner is None else (lambda names: -inner(names))
    if isinstance(node, nodes.Compare) and len(node.ops) == 1 and node.ops[0].op in _COMPARE:
        left, right = _closure(node.expr), _closure(node.ops[0].expr)
        compare = _COMPARE[node.ops[0].op]
        if left is None or right is None:
            return None
        if isinstance(node.ops[0].expr, nodes.Const):
            constant = node.ops[0].expr.value
            return lambda names: compare(left(names), constant)
        return lambda names: compare(left(names), right(names))
    if (isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and not node.kwargs
            and node.dyn_args is None and node.dyn_kwargs is None):
        function = node.node.name
        args = [_closure(arg) for arg in node.args]
        if function not in FUNCTIONS or any(arg is None for arg in args):
            return None
        return _call(function, tuple(args))  # type: ignore[arg-type]
    return None


def _call(function: str, arguments: tuple[Compiled, ...]) -> Compiled:
    if not arguments:
        return lambda names: names[function]()
    if len(arguments) == 1:
        only = arguments[0]
        return lambda names: names[function](only(names))

    def call(names: Mapping[str, Any]) -> Any:
        return names[function](*[arg(names) for arg in arguments])
    return call
