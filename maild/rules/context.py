"""What an expression sees: the records of a rule's subject as plain dicts, and the helper functions.

Records are loaded with Core SQL, several subjects at once (`Directory.load` takes every third party of a
sweep's candidates in one query per table), and turned into dicts whose keys are the names rule files use
(`thirdparty.name`, `invoice.due_on`, `contact.address`). The helpers of `maild.rules.model.FUNCTIONS` are
closures over one subject (`Scope`); time comes from the engine's clock, never from the wall.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import nodes
from sqlalchemy import Connection, Text, cast, func, select

from maild.business.invoices import invoice_context
from maild.clock import as_utc
from maild.config import Config
from maild.matchers.normalize import normalize_address, normalize_domain
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
    ThirdParty,
)
from maild.templates.render import TEXT_ENV

_tp, _c, _a = ThirdParty.__table__, Contact.__table__, MailAddress.__table__
_m, _mm, _ob, _ev, _mt = Message.__table__, MessageMatch.__table__, OutboxMessage.__table__, Event.__table__, \
    Meeting.__table__
DECIDED = ("matched", "assigned")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CHUNK = 900  # ids per IN (...) list
ZERO = Decimal("0.00")


# --- record views --------------------------------------------------------------------------------


def thirdparty_view(row: Any, addresses: list[str]) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "kind": row.kind, "external_id": row.external_id,
            "tags": list(row.tags or []), "fields": dict(row.custom_fields or {}), "owner": row.owner,
            "language": row.language, "address": addresses[0] if addresses else None, "addresses": addresses}


def contact_view(row: Any, addresses: list[str]) -> dict[str, Any]:
    return {"id": row.id, "thirdparty_id": row.thirdparty_id, "name": row.name, "role": row.role,
            "language": row.language, "phones": list(row.phones or []), "external_id": row.external_id,
            "address": addresses[0] if addresses else None, "addresses": addresses}


def invoice_view(conn: Connection, row: Any) -> dict[str, Any]:
    """The business module's view (`invoice_context`: amount_due, lines, totals ...), so templates and rules read
    the same names. An invoice without lines gets the same dict built directly from the row (a sweep builds
    thousands; tests/rules/test_context.py keeps the two equal)."""
    if row.lines:
        view = invoice_context(conn, row)
    else:
        amount, paid, fees = row.amount, row.paid_amount or ZERO, row.late_fees or ZERO
        issued, due = row.issued_on, row.due_on
        view = {"id": row.id, "ref": row.ref, "thirdparty_id": row.thirdparty_id, "contact_id": row.contact_id,
                "date": issued, "issued_on": issued, "due_on": due, "due_date": due, "currency": row.currency,
                "amount": amount, "paid_amount": paid, "amount_paid": paid, "late_fees": fees,
                "amount_due": amount - paid + fees, "total": amount, "total_net": amount, "total_vat": ZERO,
                "lines": [], "status": row.status, "dunning_level": row.dunning_level or 0,
                "dunning_repeats": row.dunning_repeats or 0, "last_dunned_at": as_utc(row.last_dunned_at),
                "paid_at": as_utc(row.paid_at)}
    view["created_at"] = as_utc(row.created_at)
    return view


def meeting_view(row: Any) -> dict[str, Any]:
    return {"id": row.id, "uid": row.uid, "thirdparty_id": row.thirdparty_id, "subject": row.subject,
            "location": row.location, "start_at": as_utc(row.start_at), "end_at": as_utc(row.end_at),
            "organizer": row.organizer, "attendees": [dict(a) for a in row.attendees or []],
            "next_steps": list(row.next_steps or []), "status": row.status, "owner": row.owner,
            "message_id": row.message_id}


def message_view(row: Any) -> dict[str, Any]:
    return {"id": row.id, "message_id": row.header_message_id, "subject": row.subject or "",
            "from": row.from_addr, "from_name": row.from_name, "to": [p[1] for p in row.to_addrs or []],
            "cc": [p[1] for p in row.cc_addrs or []], "date": as_utc(row.date), "in_reply_to": row.in_reply_to,
            "body": row.text_body or ""}


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


@dataclass
class Directory:
    """Third parties with their contacts (and addresses) for a set of ids, loaded in bulk, kept for one pass.

    Actions that change a third party update the cached dict too, so later subjects of the same pass see it.
    """

    thirdparties: dict[int, dict[str, Any]] = field(default_factory=dict)
    contacts: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # by third party, in id order
    contact_by_id: dict[int, dict[str, Any]] = field(default_factory=dict)

    def load(self, conn: Connection, thirdparty_ids: Iterable[int | None]) -> None:
        wanted = sorted({i for i in thirdparty_ids if i is not None and i not in self.thirdparties})
        if not wanted:
            return
        for ids in chunks(wanted):
            addresses: dict[tuple[int, int | None], list[str]] = {}
            for tp_id, contact_id, address in conn.execute(
                    select(_a.c.thirdparty_id, _a.c.contact_id, _a.c.address)
                    .where(_a.c.thirdparty_id.in_(ids)).order_by(_a.c.id)):
                addresses.setdefault((tp_id, contact_id), []).append(address)
            for tp_id in ids:
                self.contacts[tp_id] = []
            for row in conn.execute(select(_c).where(_c.c.thirdparty_id.in_(ids)).order_by(_c.c.id)):
                view = contact_view(row, addresses.get((row.thirdparty_id, row.id), []))
                self.contacts[row.thirdparty_id].append(view)
                self.contact_by_id[row.id] = view
            for row in conn.execute(select(_tp).where(_tp.c.id.in_(ids))):
                general = addresses.get((row.id, None), [])
                first_contact = next((c["address"] for c in self.contacts[row.id] if c["address"]), None)
                view = thirdparty_view(row, general or ([first_contact] if first_contact else []))
                self.thirdparties[row.id] = view

    def thirdparty(self, thirdparty_id: int | None) -> dict[str, Any] | None:
        return self.thirdparties.get(thirdparty_id) if thirdparty_id is not None else None

    def contact(self, thirdparty_id: int | None, contact_id: int | None = None) -> dict[str, Any] | None:
        """The given contact when it belongs to the third party; else its first contact with an address."""
        if contact_id is not None and contact_id in self.contact_by_id:
            return self.contact_by_id[contact_id]
        if thirdparty_id is None:
            return None
        contacts = self.contacts.get(thirdparty_id, [])
        return next((c for c in contacts if c["address"]), contacts[0] if contacts else None)


@dataclass
class OwnMail:
    """Which senders are us: the outbound sender and matching.own_addresses / own_domains."""

    addresses: frozenset[str]
    domains: frozenset[str]

    @classmethod
    def from_config(cls, config: Config) -> OwnMail:
        addresses = {normalize_address(a) for a in [*config.matching.own_addresses, config.outbound.sender]}
        domains = {normalize_domain(d) for d in config.matching.own_domains}
        return cls(frozenset(a for a in addresses if a), frozenset(d for d in domains if d))

    def is_ours(self, address: str | None) -> bool:
        normal = normalize_address(address)
        if normal is None:
            return False
        return normal in self.addresses or normal.rpartition("@")[2] in self.domains


@dataclass
class Replies:
    """The newest inbound mail (matched or assigned to the third party, not from us) per third party."""

    own: OwnMail
    latest: dict[int, datetime | None] = field(default_factory=dict)

    def load(self, conn: Connection, thirdparty_ids: Iterable[int | None]) -> None:
        wanted = sorted({i for i in thirdparty_ids if i is not None and i not in self.latest})
        if not wanted:
            return
        when = func.coalesce(_m.c.date, _m.c.ingested_at)
        for ids in chunks(wanted):
            for tp_id in ids:
                self.latest[tp_id] = None
            rows = conn.execute(
                select(_mm.c.thirdparty_id, _m.c.from_addr, func.max(when).label("at"))
                .select_from(_mm.join(_m, _m.c.id == _mm.c.message_id))
                .where(_mm.c.thirdparty_id.in_(ids), _mm.c.status.in_(DECIDED))
                .group_by(_mm.c.thirdparty_id, _m.c.from_addr))
            for tp_id, sender, at in rows:
                if at is None or self.own.is_ours(sender):
                    continue
                at = _as_datetime(at)
                best = self.latest.get(tp_id)
                if best is None or at > best:
                    self.latest[tp_id] = at

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


@dataclass
class Clock:
    """`now` (UTC) and the rules' time zone, for `today`, day counts and business hours."""

    now: datetime
    zone: ZoneInfo
    days: frozenset[str]
    start: time
    end: time | None  # None: 24:00

    @classmethod
    def of(cls, config: Config, now: datetime, timezone: str | None = None) -> Clock:
        hours = config.rules.business_hours
        end = None if hours.end == "24:00" else time.fromisoformat(hours.end)
        return cls(as_utc(now) or now, ZoneInfo(timezone or config.rules.timezone), frozenset(hours.days),
                   time.fromisoformat(hours.start), end)

    @property
    def local(self) -> datetime:
        return self.now.astimezone(self.zone)

    @property
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
        return datetime.combine(value, time(0), self.zone).astimezone(self.now.tzinfo)

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
        return Decimal(invoice["amount"]) - Decimal(invoice["paid_amount"]) + Decimal(invoice["late_fees"])

    def replied_since(moment: date | datetime | None = None) -> bool:
        tp = scope.thirdparty
        if tp is None:
            return False
        scope.replies.load(scope.conn, [tp["id"]])
        return scope.replies.since(tp["id"], clock.moment(moment))

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
        scope.directory.load(scope.conn, [tp["id"]])
        wanted = str(role).casefold()
        return next((c for c in scope.directory.contacts.get(tp["id"], [])
                     if (c["role"] or "").casefold() == wanted), None)

    def duration(text: str) -> timedelta:
        return parse_duration(text)

    return {"days_since": days_since, "days_until": days_until, "days_overdue": days_overdue,
            "amount_due": amount_due, "replied_since": replied_since, "wrote_to": wrote_to_, "has_tag": has_tag,
            "business_hours": clock.business_hours, "contact_with_role": contact_with_role, "duration": duration}


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
    list (such as `attendees`), to any of them."""
    if isinstance(target, list | tuple):
        return any(wrote_to(conn, own, item, moment) for item in target)
    address = normalize_address(address_of(target))
    if address is None:
        raise ValueError(f"wrote_to(): {target!r} is not a mail address")
    # A cheap text prefilter on the domain (JSON text; only when plain ASCII), then the exact check in Python.
    domain = address.rpartition("@")[2]
    pattern = "%@" + domain.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    query = select(_ob.c.recipients).where(_ob.c.status.not_in(("cancelled", "failed")))
    if domain.isascii():
        query = query.where(func.lower(cast(_ob.c.recipients, Text)).like(pattern, escape="\\"))
    if moment is not None:
        query = query.where(_ob.c.created_at > moment)
    for (recipients,) in conn.execute(query):
        if any(normalize_address(r) == address for r in recipients or []):
            return True
    when = func.coalesce(_m.c.date, _m.c.ingested_at)
    query = select(_m.c.from_addr, _m.c.to_addrs, _m.c.cc_addrs)
    if domain.isascii():
        query = query.where(func.lower(cast(_m.c.to_addrs, Text)).like(pattern, escape="\\")
                            | func.lower(cast(_m.c.cc_addrs, Text)).like(pattern, escape="\\"))
    if moment is not None:
        query = query.where(when > moment)
    for sender, to, cc in conn.execute(query):
        if own.is_ours(sender) and any(normalize_address(p[1]) == address for p in [*(to or []), *(cc or [])]):
            return True
    return False


# --- evaluation ----------------------------------------------------------------------------------------


class _Fallback(Exception):
    """The fast path cannot decide: let Jinja evaluate (and report any error in its words)."""


_DICT_ATTRIBUTES = frozenset(dir(dict))
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b, "lteq": lambda a, b: a <= b,
    "gt": lambda a, b: a > b, "gteq": lambda a, b: a >= b, "in": lambda a, b: a in b,
    "notin": lambda a, b: a not in b,
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

    def _entry(self, item: Expression | TextTemplate) -> tuple[Compiled | None, tuple[str, ...]]:
        found = self._cache.get(id(item))
        if found is None or found[0] is not item:
            used = set(item.names) | set(getattr(item, "functions", ()))
            fast = _compile(item.source) if isinstance(item, Expression) else None
            found = (item, fast, tuple(sorted(used)))
            self._cache[id(item)] = found
        return found[1], found[2]

    def value(self, expression: Expression, names: Mapping[str, Any]) -> Any:
        fast, used = self._entry(expression)
        if fast is not None:
            try:
                return fast(names)
            except Exception:
                pass
        return expression.evaluate({name: names[name] for name in used if name in names})

    def text(self, template: TextTemplate, names: Mapping[str, Any]) -> str:
        _, used = self._entry(template)
        return template.render({name: names[name] for name in used if name in names})


def _compile(source: str) -> Compiled | None:
    try:
        body = TEXT_ENV.parse("{{ " + source + " }}").body
    except Exception:
        return None
    if len(body) != 1 or not isinstance(body[0], nodes.Output) or len(body[0].nodes) != 1:
        return None
    return _closure(body[0].nodes[0])


def _closure(node: nodes.Node) -> Compiled | None:
    if isinstance(node, nodes.Const):
        constant = node.value
        return lambda names: constant
    if isinstance(node, nodes.Name) and node.ctx == "load":
        name = node.name

        def load(names: Mapping[str, Any]) -> Any:
            if name not in names:
                raise _Fallback(name)
            return names[name]
        return load
    if isinstance(node, nodes.Getattr):
        inner, attr = _closure(node.node), node.attr
        if inner is None or attr.startswith("_") or attr in _DICT_ATTRIBUTES:
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
        return lambda names: compare(left(names), right(names))
    if (isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and not node.kwargs
            and node.dyn_args is None and node.dyn_kwargs is None):
        function = node.node.name
        args = [_closure(arg) for arg in node.args]
        if function not in FUNCTIONS or any(arg is None for arg in args):
            return None
        arguments = tuple(args)

        def call(names: Mapping[str, Any]) -> Any:
            return names[function](*(arg(names) for arg in arguments))  # type: ignore[misc]
        return call
    return None
