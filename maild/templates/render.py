"""Render a template's files in a Jinja2 sandbox.

- `ImmutableSandboxedEnvironment` (a SandboxedEnvironment that also refuses to mutate the context's lists
  and dicts): no access to `_`-attributes, `__globals__`, `mro()` or the like; a violation is an error.
- `StrictUndefined`: a missing placeholder is an error, never an empty string in a customer's mail.
- Autoescape only for `body.html`; the subject and the text body are plain text.
- Sizes: an operation that would build a value larger than `template_max_bytes` (a format width, a repetition,
  a growing filter) is refused before it runs (maild/templates/sandbox.py, the sandbox every template shares).
- Bounded: rendering one template (subject, text and HTML together) may take `RenderLimits.seconds` and
  produce `RenderLimits.max_bytes` of output (`outbound.template_max_seconds` / `template_max_bytes`).
  Every `{% for %}` iterates through a budget check (the loop's iterable is wrapped at compile time) and
  every call (macros, `loop(...)` of recursive loops) checks it too, so a runaway loop or recursion stops
  with an error instead of stalling the sender; output is counted as it is generated.
- Every failure is a `TemplateRenderError` whose message reads `FILE:LINE: what`.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date as date_type
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel import Locale
from babel.core import UnknownLocaleError
from babel.dates import format_date
from babel.numbers import format_currency
from jinja2 import StrictUndefined, Template, TemplateSyntaxError, nodes, pass_context
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context

from maild.templates.loader import TemplateFiles
from maild.templates.sandbox import DEFAULT_MAX_CHARS, BoundedSandbox, limited_to

# Characters that end a line (str.splitlines); none may appear in a subject (header injection).
_LINE_BREAKS = frozenset("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


class TemplateRenderError(ValueError):
    """A template that cannot be rendered; the message reads `FILE:LINE: what`."""

    def __init__(self, path: Path | str, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        super().__init__(f"{self.path}:{line}: {message}" if line is not None else f"{self.path}: {message}")


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None
    language: str


def _locale(ctx: Context | None, locale: str | None) -> Locale:
    value = locale or (ctx.get("language") if ctx is not None else None) or "en"
    try:
        return Locale.parse(str(value).replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError) as exc:
        raise ValueError(f"unknown locale {value!r}") from exc


def to_decimal(amount: Any) -> Decimal:
    if isinstance(amount, bool):
        raise ValueError(f"not an amount: {amount!r}")
    if isinstance(amount, float):
        return Decimal(repr(amount))
    try:
        return Decimal(str(amount).strip()) if isinstance(amount, str) else Decimal(amount)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(f"not an amount: {amount!r}") from None


def to_date(value: Any) -> date_type:
    if isinstance(value, date_type):  # datetime is a date too
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip()).date() if "T" in value else date_type.fromisoformat(
                value.strip())
        except ValueError:
            pass
    raise ValueError(f"not a date: {value!r} (use a date, a datetime or an ISO string such as 2026-11-20)")


def format_money(amount: Any, currency: str = "EUR", locale: str | Locale = "en") -> str:
    loc = locale if isinstance(locale, Locale) else _locale(None, locale)
    return format_currency(to_decimal(amount), str(currency), locale=loc)


def format_day(value: Any, format: str = "medium", locale: str | Locale = "en") -> str:
    loc = locale if isinstance(locale, Locale) else _locale(None, locale)
    return format_date(to_date(value), format=format, locale=loc)


@pass_context
def money_filter(ctx: Context, amount: Any, currency: str = "EUR", locale: str | None = None) -> str:
    """`{{ invoice.total|money }}`, `{{ x|money("USD") }}`, `{{ x|money(locale="de") }}`: 1.234,56 € in de."""
    return format_money(amount, currency, _locale(ctx, locale))


@pass_context
def date_filter(ctx: Context, value: Any, format: str = "medium", locale: str | None = None) -> str:
    """`{{ invoice.due_date|date }}`; format is short|medium|long|full or a CLDR pattern such as 'dd.MM.yyyy'."""
    return format_day(value, format, _locale(ctx, locale))


BUDGET_FILTER = "maild_render_budget"


@dataclass(frozen=True)
class RenderLimits:
    """How long one template may render and how much it may write (see `outbound.template_max_*`)."""

    seconds: float = 5.0
    max_bytes: int = DEFAULT_MAX_CHARS


class RenderLimitExceeded(Exception):
    """A template ran past its time or output budget."""


class _Budget:
    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.seconds
        self.written = 0

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise RenderLimitExceeded(
                f"rendering took longer than {self.limits.seconds:g} s (outbound.template_max_seconds): "
                f"a loop or recursion that does not end?")

    def wrote(self, chunk: str) -> None:
        self.written += len(chunk.encode("utf-8", "surrogatepass"))
        if self.written > self.limits.max_bytes:
            raise RenderLimitExceeded(
                f"the rendered mail is larger than {self.limits.max_bytes} bytes (outbound.template_max_bytes)")
        self.check()


_budget: ContextVar[_Budget | None] = ContextVar("maild_render_budget", default=None)


@contextmanager
def _budgeted(limits: RenderLimits | None) -> Iterator[_Budget]:
    """The budget of the template being rendered: the caller's, or a new one (`limits`, else the defaults)."""
    current = _budget.get()
    if current is not None and limits is None:
        yield current
        return
    budget = _Budget(limits or RenderLimits())
    token = _budget.set(budget)
    try:
        with limited_to(budget.limits.max_bytes):
            yield budget
    finally:
        _budget.reset(token)


def _checked(iterable: Iterable[Any]) -> Iterator[Any]:
    """A `{% for %}` loop's iterable, checking the render budget at every item."""
    budget = _budget.get()
    for item in iterable:
        if budget is not None:
            budget.check()
        yield item


class _Sandbox(BoundedSandbox):
    """maild's bounded sandbox (maild/templates/sandbox.py), plus the render budget's time check at every call."""

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _budget.get()
        if budget is not None:
            budget.check()
        return super().call(__context, __obj, *args, **kwargs)


def _environment(autoescape: bool) -> BoundedSandbox:
    env = _Sandbox(undefined=StrictUndefined, autoescape=autoescape, trim_blocks=True, lstrip_blocks=True)
    env.filters["money"] = money_filter
    env.filters["date"] = date_filter
    env.filters[BUDGET_FILTER] = _checked
    return env


TEXT_ENV = _environment(autoescape=False)
HTML_ENV = _environment(autoescape=True)


def compile_file(path: Path, html: bool = False) -> Template:
    """Parse one template file; TemplateRenderError on unreadable files and syntax errors (with the line).

    Compiled templates are cached by path, size and modification time: a bulk send compiles once, an
    edited template is picked up at the next render.
    """
    try:
        stat = path.stat()
    except OSError as exc:
        raise TemplateRenderError(path, None, f"cannot read template: {exc}") from None
    return _compile_cached(str(path), stat.st_mtime_ns, stat.st_size, html)


@lru_cache(maxsize=256)
def _compile_cached(path_text: str, _mtime_ns: int, _size: int, html: bool) -> Template:
    path = Path(path_text)
    env = HTML_ENV if html else TEXT_ENV
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateRenderError(path, None, f"cannot read template: {exc}") from None
    try:
        tree = env.parse(source, name=path.name, filename=str(path))
        for loop in tree.find_all(nodes.For):  # every loop checks the render budget at each item
            loop.iter = nodes.Filter(loop.iter, BUDGET_FILTER, [], [], None, None, lineno=loop.iter.lineno)
        code = env.compile(tree, name=path.name, filename=str(path))
    except TemplateSyntaxError as exc:
        raise TemplateRenderError(path, exc.lineno, f"syntax error: {exc.message}") from None
    return env.template_class.from_code(env, code, env.make_globals(None), None)


def render_file(path: Path, context: dict[str, Any], html: bool = False, limits: RenderLimits | None = None) -> str:
    """One file, within `limits` (or the budget of the template being rendered, or the default limits)."""
    template = compile_file(path, html)
    with _budgeted(limits) as budget:
        parts: list[str] = []
        try:
            for chunk in template.generate(context):
                budget.wrote(chunk)
                parts.append(chunk)
        except Exception as exc:  # undefined, sandbox, filter, budget errors: all are the template's fault
            raise TemplateRenderError(path, _template_line(exc, path), _describe(exc)) from None
        return "".join(parts)


def render(files: TemplateFiles, context: dict[str, Any], limits: RenderLimits | None = None) -> Rendered:
    """Subject, text and (if present) HTML of a template, together within `limits`. `language` in the context
    is set to the language of the chosen files, so `money` and `date` format for the language the mail is
    written in."""
    context = {**context, "language": files.language}
    with _budgeted(limits or RenderLimits()):
        subject = render_file(files.subject, context).strip()
        if any(ch in _LINE_BREAKS for ch in subject):
            raise TemplateRenderError(files.subject, 1,
                                      f"the subject must be a single line; rendered with a line break: {subject!r}")
        text = render_file(files.text, context)
        html = render_file(files.html, context, html=True) if files.html is not None else None
    return Rendered(subject=subject, text=text, html=html, language=files.language)


def _template_line(exc: BaseException, path: Path) -> int | None:
    """The line of the template frame nearest the error (Jinja rewrites tracebacks to template lines)."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == str(path):
            line = frame.lineno
    return line


def _describe(exc: BaseException) -> str:
    from jinja2.exceptions import UndefinedError

    if isinstance(exc, SecurityError):
        return f"refused by the sandbox: {exc}"
    if isinstance(exc, RenderLimitExceeded):
        return str(exc)
    if isinstance(exc, UndefinedError):
        return f"undefined placeholder: {exc}"
    return f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)
