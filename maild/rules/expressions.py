"""The condition language: Jinja2 expressions, compiled once, evaluated in the same sandbox as templates.

An expression is what stands between `{{` and `}}` in a template: `invoice.status == "open" and
days_overdue() > 7`, `not replied_since(invoice.last_dunned_at)`, `"vip" in thirdparty.tags`. No statements,
no attribute starting with `_`, no mutation, StrictUndefined (a misspelt field is an error, never false).
Text values of actions (task titles, notes, folders) are Jinja2 templates rendered in the same sandbox.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import TemplateSyntaxError, Undefined, nodes

from maild.rules.errors import Position, RuleError
from maild.templates.render import TEXT_ENV


class Expression:
    """A compiled expression; `evaluate(names)` returns its value (errors raise `ExpressionError`)."""

    __slots__ = ("_compiled", "functions", "names", "position", "source")

    def __init__(self, source: str, position: Position, key: str = "if") -> None:
        self.source = source
        self.position = position
        try:
            tree = TEXT_ENV.parse("{{ " + source + " }}")
            self._compiled = TEXT_ENV.compile_expression(source, undefined_to_none=False)
        except TemplateSyntaxError as exc:
            raise RuleError(_shift(position, exc.lineno), key, f"invalid expression {source!r}: {exc.message}") \
                from None
        called = {n.node.name for n in tree.find_all(nodes.Call) if isinstance(n.node, nodes.Name)}
        used = {n.name for n in tree.find_all(nodes.Name) if n.ctx == "load"}
        self.functions = frozenset(called)
        self.names = frozenset(used - called)

    def evaluate(self, names: Mapping[str, Any]) -> Any:
        try:
            value = self._compiled(**names)
            if isinstance(value, Undefined):  # e.g. a refused attribute: an error, never a silent false
                value._fail_with_undefined_error()
            return value
        except Exception as exc:
            raise ExpressionError(self, exc) from exc

    def __repr__(self) -> str:
        return f"Expression({self.source!r} at {self.position})"


class TextTemplate:
    """A text value with `{{ placeholders }}`, rendered in the sandbox with the rule's context."""

    __slots__ = ("_template", "names", "position", "source")

    def __init__(self, source: str, position: Position, key: str) -> None:
        self.source = source
        self.position = position
        try:
            tree = TEXT_ENV.parse(source)
            self._template = TEXT_ENV.from_string(source)
        except TemplateSyntaxError as exc:
            raise RuleError(_shift(position, exc.lineno), key, f"invalid template text: {exc.message}") from None
        self.names = frozenset(n.name for n in tree.find_all(nodes.Name) if n.ctx == "load")

    def render(self, names: Mapping[str, Any]) -> str:
        try:
            return self._template.render(**names)
        except Exception as exc:
            raise ExpressionError(self, exc) from exc

    def __repr__(self) -> str:
        return f"TextTemplate({self.source!r} at {self.position})"


class ExpressionError(ValueError):
    """An expression or text that failed at run time; says where it is written and what went wrong."""

    def __init__(self, where: Expression | TextTemplate, exc: BaseException) -> None:
        self.where = where
        super().__init__(f"{where.position}: {where.source!r}: {type(exc).__name__}: {exc}")


def _shift(position: Position, lineno: int | None) -> Position:
    """The position of line `lineno` (1-based) inside a value that starts at `position`."""
    if not lineno or lineno <= 1:
        return position
    return Position(position.file, position.line + lineno - 1, 1)
