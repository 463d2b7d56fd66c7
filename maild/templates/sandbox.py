"""The one Jinja2 sandbox of maild (outbound templates, rule expressions and texts, filing folder names).

An `ImmutableSandboxedEnvironment` that also refuses, before it builds anything, an operation whose result
would be larger than the size limit (`outbound.template_max_bytes`, see `size_limit`): the format-width bombs
(`"%999999999d" % 1`, `"{:>999999999}".format(1)`, `"%s"|format`), repetition (`"x" * 10**9`,
`[[1] * 100000] * 100000`), concatenation that doubles in a loop, large powers, and the filters and string
methods that grow their input by a number or a second string (`center`, `indent`, `join`, `replace`,
`wordwrap`, `batch`, `slice`, `tojson`; `ljust`, `rjust`, `zfill`, `expandtabs`, `translate`). Every refusal is
a `TemplateSizeError` (a `SecurityError`: "refused by the sandbox") that says what was refused and the limit.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache, update_wrapper
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
from markupsafe import Markup

MAX_POWER = 100  # `x ** n`: |n| at most this
MAX_COUNT = 100_000  # items a filter may add by a number (`batch` padding, `slice` columns), like Jinja's MAX_RANGE
MAX_JSON_INDENT = 100
DEFAULT_MAX_CHARS = 2_000_000  # the default of outbound.template_max_bytes

_limit: ContextVar[int] = ContextVar("maild_template_size_limit", default=DEFAULT_MAX_CHARS)

# A printf conversion: %[(key)][flags][width][.precision][length]type
_PRINTF = re.compile(r"%(?:\((?P<key>[^)]*)\))?[-#0 +]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d*))?[hlL]?"
                     r"(?P<type>[diouxXeEfFgGcrsa%])")
_NUMBERS = re.compile(r"\d+")


class TemplateSizeError(SecurityError):
    """An operation whose result would be larger than the template size limit; refused before it ran."""


def size_limit() -> int:
    """The size (characters, items) no value built by a template may exceed."""
    return _limit.get()


@contextmanager
def limited_to(max_chars: int) -> Iterator[None]:
    """Within the block, values built by templates are limited to `max_chars`."""
    token = _limit.set(max_chars)
    try:
        yield
    finally:
        _limit.reset(token)


def refuse_if_larger(size: int, what: str) -> None:
    """Raise `TemplateSizeError` when `size` is above the limit."""
    limit = size_limit()
    if size > limit:
        raise TemplateSizeError(
            f"{what} would build about {size} characters or items, more than the limit of {limit} "
            f"(outbound.template_max_bytes)")


def weight(value: Any) -> int:
    """A lower bound of the characters `value` prints as (strings: their length; containers: their contents)."""
    if isinstance(value, str):
        return len(value)
    return _weigh(value, {})


def _weigh(value: Any, seen: dict[int, int]) -> int:
    if type(value) in _SCALARS:
        return max(1, value.bit_length() * 3 // 10) if type(value) is int else 1
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, int):
        return max(1, value.bit_length() * 3 // 10)
    if not isinstance(value, list | tuple | set | frozenset | dict):
        return 1
    known = seen.get(id(value))
    if known is not None:
        return known
    seen[id(value)] = 0  # a container that holds itself counts once
    items = value.items() if isinstance(value, dict) else ((item, None) for item in value)
    total = 2
    for key, item in items:
        total += 2 + _weigh(key, seen) + (_weigh(item, seen) if item is not None else 0)
    seen[id(value)] = total
    return total


def printf_size(template: str, values: Any) -> int:
    """The size `template % values` reaches at least: its text plus every width and precision it asks for."""
    size = len(template)
    arguments = list(values) if isinstance(values, tuple) else [values]
    position = 0
    for match in _PRINTF.finditer(template):
        for part in ("width", "precision"):
            text = match.group(part)
            if text == "*":
                if position < len(arguments) and isinstance(arguments[position], int):
                    size += abs(arguments[position])
                position += 1
            elif text:
                size += int(text)
        if match.group("type") != "%" and match.group("key") is None:
            position += 1
    return size


def _format_spec_size(spec: str) -> int:
    """The characters a `str.format` field with this spec reaches at least (widths, precisions, strftime pads)."""
    return sum(int(number) for number in _NUMBERS.findall(spec))


def _checked_printf(template: str, values: Any) -> str:
    size = printf_size(template, values) if "*" in template else _fixed_printf_size(template)
    refuse_if_larger(size + weight(values), f"formatting {_shorten(template)!r}")
    return template % values


@lru_cache(maxsize=1024)
def _fixed_printf_size(template: str) -> int:
    """`printf_size` of a template without `*` widths (it does not depend on the values): computed once."""
    return printf_size(template, ())


def _shorten(text: str, length: int = 40) -> str:
    return text if len(text) <= length else text[:length] + "..."


class _SpecCheck(string.Formatter):
    """A `str.format` formatter that adds up the fields' widths and refuses before one is built too large."""

    _requested = 0

    def vformat(self, format_string: str, args: Any, kwargs: Any) -> str:
        self._requested = len(format_string)
        return super().vformat(format_string, args, kwargs)

    def format_field(self, value: Any, format_spec: str) -> Any:
        self._requested += _format_spec_size(format_spec) + weight(value)
        refuse_if_larger(self._requested, f"the format field {{:{_shorten(format_spec)}}}")
        return super().format_field(value, format_spec)


class _BoundedFormatter(_SpecCheck, SandboxedFormatter):
    pass


class _BoundedEscapeFormatter(_SpecCheck, SandboxedEscapeFormatter):
    pass


def _str_method_size(name: str, text: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int | None:
    """The size a growing `str` method's result reaches, from its arguments (None: not a growing method)."""
    first = args[0] if args else None
    if name in ("ljust", "rjust", "center", "zfill"):
        return max(len(text), first if isinstance(first, int) else 0)
    if name == "expandtabs":
        tabsize = first if isinstance(first, int) else kwargs.get("tabsize", 8)
        return len(text) + text.count("\t") * max(0, int(tabsize))
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        old, new = args[0], args[1]
        count = text.count(old) if old else len(text) + 1
        if len(args) > 2 and isinstance(args[2], int) and args[2] >= 0:
            count = min(count, args[2])
        return len(text) + count * max(0, len(new) - len(old))
    if name == "translate" and isinstance(first, Mapping):
        longest = max((len(v) for v in first.values() if isinstance(v, str)), default=1)
        return len(text) * max(1, longest)
    return None


def _guard_str_method(method: Any) -> Callable[..., Any] | None:
    """A `str` method that can grow its string, wrapped to refuse a result above the limit; else None."""
    name = getattr(method, "__name__", "")
    owner = getattr(method, "__self__", None)
    if not isinstance(owner, str) or name not in ("ljust", "rjust", "center", "zfill", "expandtabs", "replace",
                                                  "translate", "join"):
        return None

    def guarded(*args: Any, **kwargs: Any) -> Any:
        if name == "join" and args:
            return _bounded_join(owner, args[0], lambda item: item)
        size = _str_method_size(name, owner, args, kwargs)
        if size is not None:
            refuse_if_larger(size, f"str.{name}")
        return method(*args, **kwargs)

    return update_wrapper(guarded, method)


def _bounded_join(separator: str, items: Any, convert: Callable[[Any], Any]) -> str:
    """`separator.join(items)`, converting each item first, refusing as soon as the result would be too large."""
    limit = _limit.get()
    step = len(separator)
    parts = []
    size = -step
    for item in items:
        part = convert(item)
        size += (len(part) if isinstance(part, str) else weight(part)) + step
        if size > limit:
            refuse_if_larger(size, "joining")
        parts.append(part)
    return separator.join(parts)


def _guarded_filters() -> dict[str, Callable[..., Any]]:
    """Jinja's filters that grow their input by a number or a second string, refusing a result too large."""
    from jinja2.filters import soft_str

    def guard(name: str, size: Callable[..., int | None]) -> Callable[..., Any]:
        original = FILTERS[name]
        skip = 1 if getattr(original, "jinja_pass_arg", None) is not None else 0

        def filtered(*args: Any, **kwargs: Any) -> Any:
            estimate = size(*args[skip:], **kwargs)
            if estimate is not None:
                refuse_if_larger(estimate, f"the filter {name}")
            return original(*args, **kwargs)

        return update_wrapper(filtered, original)

    def center(value: Any, width: int = 80) -> int:
        return max(len(soft_str(value)), width if isinstance(width, int) else 0)

    def indent(value: Any, width: int | str = 4, *_: Any, **__: Any) -> int:
        text = soft_str(value)
        per_line = width if isinstance(width, int) else len(str(width))
        return len(text) + (text.count("\n") + 1) * max(0, per_line)

    def wordwrap(value: Any, width: int = 79, break_long_words: bool = True, wrapstring: str | None = None,
                 *_: Any, **kwargs: Any) -> int:
        text = soft_str(value)
        wrap = kwargs.get("wrapstring", wrapstring) or "\n"
        width = kwargs.get("width", width)
        lines = len(text) // max(1, width if isinstance(width, int) else 1) + text.count("\n") + 1
        return len(text) + lines * len(wrap)

    def replace(value: Any, old: Any = "", new: Any = "", count: Any = None, **_: Any) -> int | None:
        return _str_method_size("replace", soft_str(value), (str(old), str(new), -1 if count is None else count), {})

    def counted(value: Any, number: Any = 0, fill_with: Any = None, **_: Any) -> None:
        if isinstance(number, int) and number > MAX_COUNT:
            raise TemplateSizeError(f"{number} items or columns are more than {MAX_COUNT}")

    def tojson(value: Any, indent: Any = None, **_: Any) -> None:
        if isinstance(indent, int) and indent > MAX_JSON_INDENT:
            raise TemplateSizeError(f"a JSON indent of {indent} is more than {MAX_JSON_INDENT}")

    def printf(value: Any, *args: Any, **kwargs: Any) -> int | None:
        return printf_size(soft_str(value), kwargs or args) + weight(kwargs or args)

    filters: dict[str, Callable[..., Any]] = {
        "center": guard("center", center), "indent": guard("indent", indent),
        "wordwrap": guard("wordwrap", wordwrap), "replace": guard("replace", replace),
        "batch": guard("batch", counted), "slice": guard("slice", counted),
        "tojson": guard("tojson", tojson), "format": guard("format", printf),
    }
    filters["join"] = _join_filter
    return filters


def _join_filter(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> str:
    """Jinja's `join`, refusing as soon as the joined text would be larger than the limit."""
    from jinja2.filters import make_attrgetter, soft_str
    from markupsafe import escape

    items = value
    if attribute is not None:
        items = map(make_attrgetter(eval_ctx.environment, attribute), items)
    if not eval_ctx.autoescape:
        return _bounded_join(str(d), items, soft_str)
    parts = list(items)
    if hasattr(d, "__html__") or any(hasattr(item, "__html__") for item in parts):
        return Markup(_bounded_join(str(escape(d)), parts, escape))
    return _bounded_join(str(d), parts, soft_str)


_join_filter.jinja_pass_arg = FILTERS["join"].jinja_pass_arg  # type: ignore[attr-defined]


class _BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with `~` concatenation checked against the size limit (it doubles in a loop)."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_text(")
        super().visit_Concat(node, frame)
        self.write(")")


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox that refuses values larger than the size limit before building them."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})
    code_generator_class = _BoundedCodeGenerator

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=_bounded_output, **options)
        self.filters.update(_guarded_filters())
        self.globals.pop("lipsum", None)  # lipsum(n=10**9) would stall a render in one call

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if type(left) in _NUMBER_TYPES and type(right) in _NUMBER_TYPES:  # the common case: arithmetic
            if operator == "**" and abs(right) > MAX_POWER:
                raise TemplateSizeError(f"exponent {right} is larger than {MAX_POWER}")
            if operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
                refuse_if_larger(weight(left) * right, "a power")
            elif operator == "*" and isinstance(left, int) and isinstance(right, int):
                refuse_if_larger(weight(left) + weight(right), "multiplying")
        elif operator == "%" and isinstance(left, str):
            return _checked_printf(left, right)
        elif operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int):
                    refuse_if_larger(weight(seq) * times, "repeating a sequence")
        elif operator == "+":
            refuse_if_larger(weight(left) + weight(right), "concatenating")
        elif operator == "**" and isinstance(right, int | float) and abs(right) > MAX_POWER:
            raise TemplateSizeError(f"exponent {right} is larger than {MAX_POWER}")
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        guarded = _guard_str_method(value)
        if guarded is not None:
            return guarded
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text: str = value.__self__
        formatter: SandboxedFormatter = (_BoundedEscapeFormatter(self, escape=text.escape)
                                         if isinstance(text, Markup) else _BoundedFormatter(self))
        is_format_map = value.__name__ == "format_map"

        def bounded(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one mapping argument")
                args, kwargs = (), args[0]
            return type(text)(formatter.vformat(text, args, kwargs))

        return update_wrapper(bounded, value)

    @staticmethod
    def bounded_text(text: str) -> str:
        """A `~` concatenation's result, refused when it is larger than the limit."""
        if len(text) > _limit.get():
            refuse_if_larger(len(text), "concatenating with ~")
        return text


_NUMBER_TYPES = frozenset({int, float, bool})
_SCALARS = frozenset({int, float, bool, type(None)})


def _bounded_output(value: Any) -> Any:
    """Every `{{ value }}` (also inside `{% set %}` blocks, which can double their text in a loop)."""
    if isinstance(value, str):
        if len(value) > _limit.get():
            refuse_if_larger(len(value), "writing a value")
    elif type(value) not in _SCALARS:
        refuse_if_larger(weight(value), "writing a value")
    return value


def sandbox(*, autoescape: bool = False, **options: Any) -> BoundedSandbox:
    """A new bounded sandbox with StrictUndefined (a missing placeholder is an error, never empty text)."""
    from jinja2 import StrictUndefined

    return BoundedSandbox(undefined=StrictUndefined, autoescape=autoescape, **options)
