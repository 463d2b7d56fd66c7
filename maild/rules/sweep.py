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
from sqlalchemy import Date, Integer, String, Table, TypeDecorator, and_, not_, or_, select
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import Select

from maild.rules.context import Clock
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
    return SweepQuery(tuple(pushed), tuple(in_python))


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


def candidates(rule: Rule, compiled: SweepQuery, clock: Clock) -> Select[Any]:
    trigger = rule.trigger
    assert isinstance(trigger, SweepTrigger)
    table = TABLES[trigger.record]
    return select(table).where(*window(trigger, clock), *compiled.pushed).order_by(table.c.id)


def fire_moment(trigger: SweepTrigger, value: date | datetime, clock: Clock) -> str:
    """When the record became due, for the reason: `2026-11-24` or an ISO instant."""
    if isinstance(value, datetime):
        return (value + trigger.offset).isoformat()
    if trigger.offset % timedelta(days=1) == timedelta(0):
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
