"""Sweep candidates in SQL: the records whose `date + offset <= now` (and `now < date + until`), plus the
conditions that translate to SQL exactly.

Dates (DATE columns such as `invoice.due_on`) count calendar days in the rules' time zone: `due_on + 7d` is
reached at local midnight seven days after the due date. Datetimes are UTC instants.

A condition is pushed into SQL only when SQL gives the same answer as Python would: comparisons of a NOT NULL
integer or text column of the swept record with a literal of the same type (`invoice.status == "open"`,
`invoice.dunning_level < 2`, `invoice.status in ["open", "paused"]`), and `and`/`or`/`not` of such. Text is
compared for (in)equality only (ordering would follow the database's collation). A condition translated
whole is not evaluated again in Python; anything else is, on the candidates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from jinja2 import nodes
from sqlalchemy import (
    Column,
    Connection,
    Date,
    DateTime,
    Integer,
    String,
    Table,
    Text,
    TypeDecorator,
    and_,
    case,
    cast,
    func,
    not_,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BinaryExpression, BindParameter, BooleanClauseList, ColumnElement
from sqlalchemy.sql.selectable import Select
from sqlalchemy.sql.visitors import InternalTraversal, replacement_traverse

from maild.rules.context import INVOICE_SWEEP_COLUMNS, Clock
from maild.rules.durations import format_duration
from maild.rules.model import Rule, SweepTrigger
from maild.store.models import Invoice, Meeting
from maild.templates.render import TEXT_ENV

TABLES: dict[str, Table] = {"invoice": Invoice.__table__, "meeting": Meeting.__table__}  # type: ignore[dict-item]
_OPS = {"eq": "__eq__", "ne": "__ne__", "lt": "__lt__", "lteq": "__le__", "gt": "__gt__", "gteq": "__ge__"}
_FLIP = {"eq": "eq", "ne": "ne", "lt": "gt", "lteq": "gteq", "gt": "lt", "gteq": "lteq"}


@dataclass(frozen=True)
class SweepQuery:
    """Per rule: the SQL conditions pushed down, and which of the rule's conditions need no Python check."""

    pushed: tuple[ColumnElement[bool], ...]
    in_python: tuple[bool, ...]  # per condition: True = evaluate in Python
    replies: bool = False  # a condition calls replied_since(): the pass loads the candidates' latest replies
    # When no index serves the window but pushed equalities lead one (`status = 'open'` on (status, due_on) for a
    # sweep on last_dunned_at): those equalities (`walk`), and `pushed` with their columns out of SQLite's reach
    # (`scan`). See `prefer_scan`.
    walk: ColumnElement[bool] | None = None
    scan: tuple[ColumnElement[bool], ...] = ()
    # When an index serves the window (`status = 'open'` and `due_on <= ...` on (status, due_on)): `pushed` with
    # every other column out of SQLite's reach. Without statistics SQLite may otherwise take another index for a
    # range on one of its columns (`dunning_level < 3` on (status, dunning_level, ...)), which reads every open
    # invoice not yet at level 3 instead of the few that are long overdue.
    pinned: tuple[ColumnElement[bool], ...] = ()


def compile_rule(rule: Rule) -> SweepQuery:
    assert isinstance(rule.trigger, SweepTrigger)
    record = rule.trigger.record
    table = TABLES[record]
    pushed: list[ColumnElement[bool]] = []
    in_python: list[bool] = []
    for condition in rule.conditions:
        clause, whole = translate(condition.source, record, table)
        if clause is not None:
            pushed.append(clause)
        in_python.append(not whole)
    replies = any("replied_since" in c.functions for c in rule.conditions)
    walk, scan, pinned = _index_walk(table, table.c[rule.trigger.date], pushed)
    return SweepQuery(tuple(pushed), tuple(in_python), replies, walk, scan, pinned)


def _index_walk(table: Table, date_column: Any, pushed: list[ColumnElement[bool]]) \
        -> tuple[ColumnElement[bool] | None, tuple[ColumnElement[bool], ...], tuple[ColumnElement[bool], ...]]:
    """(walk, scan, pinned): see `SweepQuery`."""
    equal: dict[Any, ColumnElement[bool]] = {}
    for clause in _conjuncts(pushed):
        if isinstance(clause, BinaryExpression) and clause.operator is operators.eq \
                and isinstance(clause.left, Column) and clause.left.table is table \
                and isinstance(clause.right, BindParameter):
            equal.setdefault(clause.left, clause)
    walked: list[Any] = []
    for index in table.indexes:
        prefix = []
        for column in index.columns:
            if column is date_column:  # this index serves the window: keep SQLite on it
                others = [c for c in table.columns if c not in prefix]
                return None, (), _without_index(pushed, others)
            if column not in equal:
                break
            prefix.append(column)
            if column not in walked:
                walked.append(column)
    if not walked:
        return None, (), ()
    return and_(*(equal[column] for column in walked)), _without_index(pushed, walked), ()


def _without_index(clauses: list[ColumnElement[bool]], columns: list[Any]) -> tuple[ColumnElement[bool], ...]:
    """The clauses with these columns as `_Unindexed`."""
    swap = {id(column): _Unindexed(column) for column in columns}
    return tuple(replacement_traverse(clause, {}, lambda element: swap.get(id(element))) for clause in clauses)


def _conjuncts(clauses: list[ColumnElement[bool]]) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    for clause in clauses:
        if isinstance(clause, BooleanClauseList) and clause.operator is operators.and_:
            out += _conjuncts(list(clause.clauses))
        else:
            out.append(clause)
    return out


class _Unindexed(ColumnElement[Any]):
    """A column that SQLite may not look up through an index here: `+column` (a no-op on any value, and SQLite's
    documented way to keep a term from an index); the plain column elsewhere."""

    inherit_cache = True
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement)]

    def __init__(self, column: Any) -> None:
        self.column = column
        self.type = column.type


@compiles(_Unindexed)
def _plain(element: _Unindexed, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.column, **kw))


@compiles(_Unindexed, "sqlite")
def _plus(element: _Unindexed, compiler: Any, **kw: Any) -> str:
    return "+" + str(compiler.process(element.column, **kw))


# On SQLite, a sweep walks an index that does not serve its window only while its equalities select less than
# 1/SCAN_SHARE of the table: a walk reads each row out of order (about ten times a row of a scan, measured), a
# scan reads them in id order (the order the sweep wants). SQLite keeps no statistics to decide this unless
# ANALYZE ran, and then walks whatever the equality; PostgreSQL has statistics and decides alone.
SCAN_SHARE = 8


def prefer_scan(conn: Connection, rule: Rule, compiled: SweepQuery) -> bool:
    """SQLite: should this sweep scan the table rather than walk the index of its equalities? (Two cheap counts:
    the index entries the walk would read, and the table's highest id as its size.)"""
    if compiled.walk is None or conn.dialect.name != "sqlite":
        return False
    assert isinstance(rule.trigger, SweepTrigger)
    table = TABLES[rule.trigger.record]
    walked = conn.execute(select(func.count()).select_from(table).where(compiled.walk)).scalar() or 0
    size = conn.execute(select(func.max(table.c.id))).scalar() or 0
    return walked * SCAN_SHARE > size


def translate(source: str, record: str, table: Table) -> tuple[ColumnElement[bool] | None, bool]:
    """(SQL clause, translated whole?). A partly translated `and` gives the clause of its translatable side:
    a necessary condition that narrows the candidates; Python still checks the whole."""
    try:
        body = TEXT_ENV.parse("{{ " + source + " }}").body
    except Exception:
        return None, False
    if len(body) != 1 or not isinstance(body[0], nodes.Output) or len(body[0].nodes) != 1:
        return None, False
    return _node(body[0].nodes[0], record, table)


def _node(node: nodes.Node, record: str, table: Table) -> tuple[ColumnElement[bool] | None, bool]:
    if isinstance(node, nodes.And):
        left, left_whole = _node(node.left, record, table)
        right, right_whole = _node(node.right, record, table)
        parts = [p for p in (left, right) if p is not None]
        clause = and_(*parts) if len(parts) > 1 else (parts[0] if parts else None)
        return clause, left_whole and right_whole
    if isinstance(node, nodes.Or):
        left, left_whole = _node(node.left, record, table)
        right, right_whole = _node(node.right, record, table)
        if left is not None and right is not None and left_whole and right_whole:
            return or_(left, right), True
        return None, False
    if isinstance(node, nodes.Not):
        inner, whole = _node(node.node, record, table)
        return (not_(inner), True) if inner is not None and whole else (None, False)
    if isinstance(node, nodes.Compare) and len(node.ops) == 1:
        clause = _compare(node.expr, node.ops[0].op, node.ops[0].expr, record, table)
        return clause, clause is not None
    return None, False


def _compare(left: nodes.Node, op: str, right: nodes.Node, record: str, table: Table) -> Any:
    column = _column(left, record, table)
    if column is None and op in _FLIP:
        column, op, left, right = _column(right, record, table), _FLIP[op], right, left
    if column is None:
        return None
    python_type = int if isinstance(_type(column), Integer) else str
    if op in ("in", "notin"):
        if not isinstance(right, nodes.List | nodes.Tuple):
            return None
        values = [_literal(item, python_type) for item in right.items]
        if any(v is _NO for v in values) or not values:
            return None
        return column.in_(values) if op == "in" else column.not_in(values)
    value = _literal(right, python_type)
    if value is _NO or op not in _OPS or (python_type is str and op not in ("eq", "ne")):
        return None
    return getattr(column, _OPS[op])(value)


_NO = object()


def _literal(node: nodes.Node, python_type: type) -> Any:
    if not isinstance(node, nodes.Const) or type(node.value) is not python_type:  # bool is no int here
        return _NO
    return node.value


def _column(node: nodes.Node, record: str, table: Table) -> Any:
    if not (isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.name == record):
        return None
    column = table.c.get(node.attr)
    if column is None or column.nullable or not isinstance(_type(column), Integer | String):
        return None
    return column


def _type(column: Any) -> Any:
    """The column's SQL type, through a TypeDecorator (SQLModel's AutoString is one over String)."""
    kind = column.type
    return kind.impl if isinstance(kind, TypeDecorator) else kind


# --- the date window -----------------------------------------------------------------------------------


def is_date(trigger: SweepTrigger) -> bool:
    column = TABLES[trigger.record].c[trigger.date]
    return isinstance(column.type, Date)


def window(trigger: SweepTrigger, clock: Clock) -> list[ColumnElement[bool]]:
    """`date + offset <= now` and, with `until`, `now < date + until`, as conditions on the date column."""
    column = TABLES[trigger.record].c[trigger.date]
    if is_date(trigger):
        local = clock.local.replace(tzinfo=None)  # wall-clock arithmetic: 7d is seven calendar days
        clauses = [column <= (local - trigger.offset).date()]
        if trigger.until is not None:
            clauses.append(column > (local - trigger.until).date())
        return clauses
    clauses = [column.is_not(None), column <= clock.now - trigger.offset]
    if trigger.until is not None:
        clauses.append(column > clock.now - trigger.until)
    return clauses


def candidates(rule: Rule, compiled: SweepQuery, clock: Clock, *, scan: bool = False,
               text_times: bool = False, only: int | None = None) -> Select[Any]:
    """The candidate rows, in id order. Invoices: INVOICE_SWEEP_COLUMNS and `has_lines` (false when `lines` is
    empty or null; true otherwise, then the engine loads the full view), so no row's lines are decoded for
    nothing; meetings: every column (the view reads them all). `scan`: see `prefer_scan` (else the conditions
    are `pinned` to the index that serves the window, if one does). `text_times`
    (SQLite): the invoice's dates and datetimes as their stored text, for `swept_invoice_view` to parse at once.
    `only` (explain): that record alone, in its window or not (`window_state` says which)."""
    trigger = rule.trigger
    assert isinstance(trigger, SweepTrigger)
    table = TABLES[trigger.record]
    columns: list[Any] = [table]
    if trigger.record == "invoice":
        lines = table.c.lines
        has_lines = and_(lines.is_not(None), cast(lines, Text).not_in(("[]", "null"))).label("has_lines")
        columns = [type_coerce(column, String).label(name)
                   if text_times and isinstance(column.type, DateTime | Date) else column
                   for name, column in ((name, table.c[name]) for name in INVOICE_SWEEP_COLUMNS)]
        columns.append(has_lines)
    if only is not None:
        return select(*columns).where(table.c.id == only)
    pushed = compiled.scan if scan and compiled.scan else (compiled.pinned or compiled.pushed)
    return select(*columns).where(*window(trigger, clock), *pushed).order_by(table.c.id)


def window_state(conn: Connection, trigger: SweepTrigger, clock: Clock, record_id: int) -> tuple[bool, list[str]]:
    """(in the window?, lines saying why) for one record at `clock`: the clauses of `window` evaluated by the
    database on that row (the very test a sweep makes), with the date and the bounds they stand for."""
    table = TABLES[trigger.record]
    column = table.c[trigger.date]
    clauses = window(trigger, clock)
    row = conn.execute(select(column, *(case((clause, 1), else_=0).label(f"c{i}")
                                        for i, clause in enumerate(clauses)))
                       .where(table.c.id == record_id)).first()
    if row is None:
        return False, [f"no {trigger.record} #{record_id}"]
    value = row[0]
    passed = [bool(flag) for flag in row[1:]]
    name = f"{trigger.record}.{trigger.date}"
    if value is None:
        return False, [f"{name} is empty: the sweep counts from it, so it never fires for this {trigger.record}"]
    opens, closes = _bound(trigger, value, trigger.offset, clock), (
        _bound(trigger, value, trigger.until, clock) if trigger.until is not None else None)
    lines = [f"{name} = {value.isoformat() if hasattr(value, 'isoformat') else value}; "
             f"the window ({describe(trigger)}) opens {opens}" + (f" and closes {closes}" if closes else
                                                                   " and has no end")]
    now = clock.local.isoformat(timespec="minutes")
    is_date_column = isinstance(column.type, Date)
    first = 0 if is_date_column else 1  # a datetime window starts with `is not null`
    if not passed[first]:
        lines.append(f"not yet: now ({now}) is before the window opens ({opens})")
        return False, lines
    if trigger.until is not None and not passed[-1]:
        lines.append(f"too late: now ({now}) is past the window's end ({closes}); a later rule takes over")
        return False, lines
    lines.append(f"now ({now}) is in the window")
    return True, lines


def _bound(trigger: SweepTrigger, value: date | datetime, offset: timedelta, clock: Clock) -> str:
    """`value + offset` as the window counts it: local midnight for dates, the UTC instant for datetimes."""
    if isinstance(value, datetime):
        return (value + offset).isoformat(timespec="minutes")
    moment = datetime.combine(value, time(0)) + offset
    return moment.replace(tzinfo=clock.zone).isoformat(timespec="minutes")


DAY = timedelta(days=1)


def fire_moment(trigger: SweepTrigger, value: date | datetime, clock: Clock) -> str:
    """When the record became due, for the reason: `2026-11-24` or an ISO instant."""
    if isinstance(value, datetime) or not trigger.offset % DAY:
        return (value + trigger.offset).isoformat()
    return (datetime.combine(value, time(0)) + trigger.offset).replace(tzinfo=clock.zone).isoformat()


def describe(trigger: SweepTrigger) -> str:
    """`due_on+21d` (and `..+35d` with until)."""
    offset = format_duration(trigger.offset)
    text = f"{trigger.date}{'' if offset.startswith('-') else '+'}{offset}"
    if trigger.until is not None:
        until = format_duration(trigger.until)
        text += f"..{'' if until.startswith('-') else '+'}{until}"
    return text
