"""Compiling a rule's expressions and text templates from YAML nodes, and checking the names they use.

Every name an expression reads must be one the rule's trigger provides (`CONTEXT_NAMES[kind]`) and every
function it calls one of `FUNCTIONS`; anything else is reported where it is written, with a suggestion.
YAML scalars that are not strings (`5`, `1.5`, `true`, `null`) are taken as the expression literals they
look like (`5`, `1.5`, `true`, `none`); a YAML string is always expression source, so the text `paused`
is written `'"paused"'`.
"""

from __future__ import annotations

import re

import yaml
from jinja2 import nodes

from maild.rules.expressions import Expression, TextTemplate
from maild.rules.model import CONTEXT_NAMES, FUNCTIONS, RuleError
from maild.rules.yaml_nodes import Errors, describe, is_scalar, is_string, suggestion, value_of
from maild.templates.render import TEXT_ENV

ALL_NAMES = frozenset().union(*CONTEXT_NAMES.values())
_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def kind_label(kind: str) -> str:
    """`event rules`, `sweep:invoice rules` ... for messages."""
    return f"{kind} rules"


class ExpressionReader:
    """Builds the Expression/TextTemplate objects of one rule; problems go to `errors`.

    `kind` is the rule's `context_kind` (None when its trigger is invalid: then any known name passes,
    so one mistake in `on:` does not flood the report).
    """

    def __init__(self, errors: Errors, kind: str | None) -> None:
        self.errors = errors
        self.kind = kind
        self.names = CONTEXT_NAMES.get(kind, ALL_NAMES) if kind else ALL_NAMES

    def has(self, name: str) -> bool:
        return name in self.names

    def expression(self, node: yaml.Node, key: str) -> Expression | None:
        source = _source(node)
        if source is None:
            self.errors.add(node, key, f"expected an expression such as invoice.status == \"open\"; "
                                       f"got {describe(node)}")
            return None
        try:
            compiled = Expression(source, self.errors.position(node), key)
        except RuleError as exc:
            self.errors.items.append(exc)
            return None
        quoted_word = is_string(node) and node.style in ("'", '"') and _IDENTIFIER.match(source) is not None
        ok = self._check(node, key, set(compiled.names), set(compiled.functions), quoted_word)
        return compiled if ok else None

    def text(self, node: yaml.Node, key: str) -> TextTemplate | None:
        if not is_string(node) or not str(node.value).strip():
            self.errors.add(node, key, f"expected a text (placeholders such as {{{{ thirdparty.name }}}} allowed); "
                                       f"got {describe(node)}")
            return None
        try:
            compiled = TextTemplate(str(node.value), self.errors.position(node), key)
        except RuleError as exc:
            self.errors.items.append(exc)
            return None
        names, functions = _template_names(compiled.source)
        return compiled if self._check(node, key, names, functions, False) else None

    def _check(self, node: yaml.Node, key: str, names: set[str], functions: set[str], quoted_word: bool) -> bool:
        ok = True
        available = ", ".join(sorted(self.names))
        for name in sorted(names - self.names):
            ok = False
            elsewhere = sorted(kind for kind, allowed in CONTEXT_NAMES.items() if name in allowed)
            if name in FUNCTIONS:
                message = f"{name!r} is a function: call it, {name}(...)"
            elif elsewhere and self.kind:
                message = (f"{name!r} is not available to {kind_label(self.kind)} (only to "
                           f"{', '.join(kind_label(k) for k in elsewhere)}); names here: {available}")
            else:
                message = f"unknown name {name!r}{suggestion(name, self.names | FUNCTIONS)}; names here: {available}"
            if quoted_word:
                message += f"; to mean the text {name!r}, write it as an expression string: '\"{name}\"'"
            self.errors.add(node, key, message)
        for function in sorted(functions - FUNCTIONS):
            ok = False
            self.errors.add(node, key, f"unknown function {function!r}{suggestion(function, FUNCTIONS)}; "
                                       f"functions: {', '.join(sorted(FUNCTIONS))}")
        return ok


def _source(node: yaml.Node) -> str | None:
    """Expression source of a scalar node: a string as written, other scalars as the literal they are."""
    if not is_scalar(node):
        return None
    if is_string(node):
        return str(node.value).strip() or None
    value = value_of(node)
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(node.value) if _NUMBER.match(str(node.value)) else repr(value)
    return None  # dates, timestamps, binary: not expressions


def _template_names(source: str) -> tuple[set[str], set[str]]:
    """(names read, functions called) of a text template, minus the names it binds itself (`{% for x %}`)."""
    tree = TEXT_ENV.parse(source)
    called = {n.node.name for n in tree.find_all(nodes.Call) if isinstance(n.node, nodes.Name)}
    bound = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    if any(True for _ in tree.find_all(nodes.For)):
        bound.add("loop")
    loaded = {n.name for n in tree.find_all(nodes.Name) if n.ctx == "load"}
    return loaded - called - bound, called - bound
