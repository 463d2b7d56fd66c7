"""Why a rule would or would not fire for one subject: what the engine saw, as `maild rules why` prints it.

The engine fills an `Explanation` while it evaluates one subject the way a real pass does (same candidate row,
same names, same evaluator): the trigger's gate (event type, window of a sweep), each condition with its value
and the values of the names and helper calls it reads, and the actions it would take (or that the ledger says
are done). Nothing here decides anything the engine does not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from jinja2 import nodes

from maild.rules.expressions import Expression, ExpressionError
from maild.templates.render import TEXT_ENV

SHOWN_CHARS = 120  # a value longer than this is cut in the explanation


@dataclass
class ConditionCheck:
    source: str
    held: bool | None  # None: the expression failed (error)
    seen: list[tuple[str, str]] = field(default_factory=list)  # (sub-expression, its value)
    error: str | None = None


@dataclass
class Explanation:
    """One rule and one subject at one moment."""

    rule: str
    file: str
    trigger: str  # `sweep invoice.due_on +21d until +35d`
    subject: str
    at: datetime
    what: str = ""  # `invoice FA2611-0105 of Müller Bau GmbH`
    gate: list[str] = field(default_factory=list)  # why the trigger does (not) reach the rule, with values
    gate_open: bool = True
    conditions: list[ConditionCheck] = field(default_factory=list)
    actions: list[Any] = field(default_factory=list)  # PlannedAction of the engine (simulated)
    notes: list[str] = field(default_factory=list)  # what a person should know (the invoice is held: why, by whom)

    @property
    def conditions_held(self) -> bool:
        return all(check.held for check in self.conditions)

    @property
    def fires(self) -> bool:
        """Would the rule act now: its trigger reaches it, its conditions hold and an action is left to do."""
        return self.gate_open and self.conditions_held and any(a.status == "planned" for a in self.actions)

    def verdict(self) -> str:
        if not self.gate_open:
            return "would not fire: " + (self.gate[-1] if self.gate else "its trigger does not reach this subject")
        failed = next((c for c in self.conditions if not c.held), None)
        if failed is not None:
            if failed.held is None:
                return f"would not fire: the condition `{failed.source}` failed: {failed.error}"
            return f"would not fire: the condition `{failed.source}` does not hold"
        if not self.actions:
            return "would fire, but it has no actions"
        if any(a.status == "planned" for a in self.actions):
            return "would fire: " + "; ".join(f"{a.summary}" for a in self.actions if a.status == "planned")
        statuses = sorted({a.status for a in self.actions})
        return f"would not fire again: its actions for this subject are {', '.join(statuses)} (see `maild rules log`)"

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "file": self.file, "trigger": self.trigger, "subject": self.subject,
                "what": self.what, "at": self.at.isoformat(), "gate": self.gate, "gate_open": self.gate_open,
                "conditions": [{"source": c.source, "held": c.held, "error": c.error, "seen": dict(c.seen)}
                               for c in self.conditions],
                "actions": [{"action": a.action, "status": a.status, "summary": a.summary, "key": a.key}
                            for a in self.actions],
                "notes": self.notes, "fires": self.fires, "verdict": self.verdict()}


def check_conditions(trace: Explanation, conditions: tuple[Expression, ...], value: Any,
                     names: Mapping[str, Any]) -> bool:
    """Evaluate every condition with the engine's `value(condition, names)` (all of them, not only up to the first
    that fails, so the explanation shows every value); record each in `trace`. Returns whether all held."""
    trace.conditions = []
    for condition in conditions:
        check = ConditionCheck(condition.source, None)
        try:
            check.held = bool(value(condition, names))
        except ExpressionError as exc:
            check.error = str(exc)
        check.seen = seen_values(condition, names)
        trace.conditions.append(check)
    return trace.conditions_held


def seen_values(condition: Expression, names: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The values of the fields and helper calls a condition reads (`invoice.dunning_level`, `amount_due()`,
    `replied_since(invoice.last_dunned_at)`), each evaluated in the same sandbox with the same names."""
    out: list[tuple[str, str]] = []
    for source in operands(condition.source):
        try:
            value = Expression(source, condition.position).evaluate(names)
        except ExpressionError as exc:
            shown = f"error: {exc.__cause__ or exc}"
        else:
            shown = show(value)
        if (source, shown) not in out:
            out.append((source, shown))
    return out


def operands(source: str) -> list[str]:
    """The sub-expressions worth showing: `record.field` chains, names that are not whole records, and calls of
    helper functions whose arguments are such (in the order written)."""
    try:
        body = TEXT_ENV.parse("{{ " + source + " }}").body
    except Exception:
        return []
    found: list[str] = []

    def visit(node: nodes.Node) -> None:
        text = _source_of(node)
        if text is not None and not isinstance(node, nodes.Const):
            if text not in found and text not in ("now", "today"):
                found.append(text)
            if isinstance(node, nodes.Call):
                for arg in node.args:
                    visit(arg)
            elif isinstance(node, nodes.Or):
                visit(node.left)
                visit(node.right)
            return
        for child in node.iter_child_nodes():
            visit(child)

    for node in body:
        visit(node)
    return found


def _source_of(node: nodes.Node) -> str | None:
    """Source text of a name, a `.field` chain, a constant, or a call of a name with such arguments."""
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        inner = _source_of(node.node)
        return None if inner is None else f"{inner}.{node.attr}"
    if isinstance(node, nodes.Const):
        return repr(node.value) if not isinstance(node.value, str) else '"' + node.value.replace('"', '\\"') + '"'
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and not node.kwargs \
            and node.dyn_args is None and node.dyn_kwargs is None:
        args = [_source_of(arg) for arg in node.args]
        if any(arg is None for arg in args):
            return None
        return f"{node.node.name}({', '.join(args)})"  # type: ignore[arg-type]
    if isinstance(node, nodes.Or):  # `invoice.last_dunned_at or invoice.due_on`, as a helper's argument
        left, right = _source_of(node.left), _source_of(node.right)
        return None if left is None or right is None else f"{left} or {right}"
    return None


def show(value: Any) -> str:
    """A value as the explanation prints it: dates in ISO, records by name, long values cut."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        label = value.get("name") or value.get("ref") or value.get("address") or value.get("id")
        return f"<{label}>" if label is not None else "{...}"
    if isinstance(value, list | tuple):
        text = "[" + ", ".join(show(v) for v in value) + "]"
    else:
        text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 3] + "..."
