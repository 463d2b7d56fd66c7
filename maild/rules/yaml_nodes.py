"""Reading a YAML file as PyYAML's node tree, so every value keeps its line and column.

The rule loader walks nodes rather than loaded data: a node's `start_mark` is where the user wrote the
value, which is what each `RuleError` must point at. `Errors` collects problems instead of stopping at the
first one; the helpers here check the shape of a node (mapping with known keys, string, list) and say
what was expected and what was found.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from maild.rules.durations import EXAMPLES as DURATION_EXAMPLES
from maild.rules.durations import parse_duration
from maild.rules.errors import Position, RuleError

MERGE_TAG = "tag:yaml.org,2002:merge"


class Errors:
    """The problems found in one file so far."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[RuleError] = []

    def position(self, node: yaml.Node | None) -> Position:
        if node is None:
            return Position(self.file, 1, 1)
        return Position(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def add(self, node: yaml.Node | None, key: str, message: str) -> None:
        self.items.append(RuleError(self.position(node), key, message))


def compose(text: str, errors: Errors) -> yaml.Node | None:
    """The node tree of `text` (None for an empty document); a syntax error is recorded with its mark."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "syntax error"
        errors.items.append(RuleError(Position(errors.file, line, column), "", f"invalid YAML: {problem}"))
    except yaml.YAMLError as exc:
        errors.items.append(RuleError(Position(errors.file, 1, 1), "", f"invalid YAML: {exc}"))
    return None


def value_of(node: yaml.Node) -> Any:
    """The Python value of a node, as yaml.safe_load would give it."""
    return SafeConstructor().construct_object(node, deep=True)  # a fresh one: it caches what it built


def describe(node: yaml.Node) -> str:
    """What the user wrote, briefly, for `...; got X` messages."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    value = value_of(node)
    if value is None:
        return "nothing"
    text = repr(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def suggestion(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` when a choice is close to `word`, else an empty string."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def is_string(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:str"


def is_scalar(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode)


def mapping(node: yaml.Node, key: str, errors: Errors, *, allowed: Iterable[str], required: Iterable[str] = (),
            expected: str = "a mapping") -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
    """`{name: (key node, value node)}` of a mapping with known keys; None (and an error) if not a mapping.

    Unknown keys (with a suggestion), repeated keys and missing required keys are errors; the known keys
    that were present are returned, so the caller goes on checking them.
    """
    if not isinstance(node, yaml.MappingNode):
        errors.add(node, key, f"expected {expected}; got {describe(node)}")
        return None
    own = sum(1 for key_node, _ in node.value if key_node.tag != MERGE_TAG)
    SafeConstructor().flatten_mapping(node)  # apply `<<: *anchor` merges: their keys come first
    merged = len(node.value) - own
    allowed = tuple(allowed)
    items: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    from_merge: set[str] = set()
    for index, (key_node, value_node) in enumerate(node.value):
        name = key_node.value if is_scalar(key_node) else None
        where = f"{key}.{name}" if key and name else (name or key)
        if not isinstance(name, str) or not is_scalar(key_node):
            errors.add(key_node, key, f"expected a key name; got {describe(key_node)}")
        elif name in from_merge:  # a key written here overrides the one merged in
            from_merge.discard(name)
            items[name] = (key_node, value_node)
        elif name in items:
            first = errors.position(items[name][0])
            errors.add(key_node, where, f"repeated key (first at line {first.line})")
        elif name not in allowed:
            errors.add(key_node, where, f"unknown key{suggestion(name, allowed)}; expected one of {', '.join(allowed)}")
        else:
            items[name] = (key_node, value_node)
            if index < merged:
                from_merge.add(name)
    missing = [name for name in required if name not in items]
    if missing:
        errors.add(node, key, f"missing required key {', '.join(repr(m) for m in missing)}")
    return items


def string(node: yaml.Node, key: str, errors: Errors, expected: str = "a string") -> str | None:
    """The text of a string scalar; None (and an error) for anything else, an empty string included."""
    if not is_string(node) or not str(node.value).strip():
        errors.add(node, key, f"expected {expected}; got {describe(node)}")
        return None
    return str(node.value)


def choice(node: yaml.Node, key: str, errors: Errors, options: tuple[str, ...]) -> str | None:
    """One of `options` (a string scalar); None (and an error saying which were possible) for anything else."""
    expected = " or ".join(options)
    value = string(node, key, errors, expected)
    if value is not None and value not in options:
        errors.add(node, key, f"expected {expected}; got {value!r}")
        return None
    return value


def strings(node: yaml.Node, key: str, errors: Errors, expected: str) -> list[tuple[str, yaml.Node]] | None:
    """A string or a list of strings (at least one), each with its node; None (and errors) otherwise."""
    items = node.value if isinstance(node, yaml.SequenceNode) else [node]
    if not items:
        errors.add(node, key, f"expected {expected}; got an empty list")
        return None
    out = []
    for index, item in enumerate(items):
        where = f"{key}[{index}]" if isinstance(node, yaml.SequenceNode) else key
        text = string(item, where, errors, expected)
        if text is not None:
            out.append((text, item))
    return out if len(out) == len(items) else None


def duration(node: yaml.Node, key: str, errors: Errors) -> timedelta | None:
    """A duration such as `7d` or `-3d` (see maild.rules.durations); None (and an error) otherwise."""
    if not is_scalar(node):
        errors.add(node, key, f"expected a duration like {DURATION_EXAMPLES}; got {describe(node)}")
        return None
    try:
        return parse_duration(str(node.value))
    except ValueError as exc:
        errors.add(node, key, str(exc))
        return None
