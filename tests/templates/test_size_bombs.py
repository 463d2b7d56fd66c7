"""Every template maild renders (outbound mail, rule expressions and texts, filing folder names) refuses a value
larger than the size limit before building it: a format width or a repetition fails with the limit in the error
and the render never holds the huge string (the traced peak stays small)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import pytest

from maild.filing.folders import folder_for
from maild.rules.errors import Position
from maild.rules.expressions import Expression, ExpressionError, TextTemplate
from maild.templates.loader import find
from maild.templates.render import RenderLimits, TemplateRenderError, render
from maild.templates.sample import sample_context
from tests.templates.test_render import make

HUGE = 99_999_999  # ~100 MB if built; the renders below must stay far below that
PEAK_BYTES = 30_000_000

BOMBS = [
    '"%99999999d" % 1',
    '"%*d" % (99999999, 1)',
    '"%.99999999f" % 1.5',
    '"{:>99999999}".format(1)',
    '"{:>{}}".format(1, 99999999)',
    '"{0:%99999999Y}".format(day)',
    '"{x:099999999}".format_map({"x": 1})',
    '"%99999999d"|format(1)',
    '"x" * 99999999',
    '[[1] * 100000] * 100000',
    '"x"|center(99999999)',
    '"x".ljust(99999999)',
    '"a\\nb"|indent(99999999, true)',
    '("x" * 100000).replace("x", "y" * 1000)',
    '("x" * 100000)|join("y" * 1000)',
    '"x".join(["y" * 100000] * 1000)',
    '("x" * 100000)|wordwrap(1, wrapstring="y" * 1000)',
    '[1]|batch(99999999, 0)|list',
    '[1]|slice(99999999)|list',
    '{"a": 1}|tojson(99999999)',
    '(((10 ** 100) ** 100) ** 100) ** 100',
]
DOUBLINGS = [
    '{% set ns = namespace(s="x") %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}',
    '{% set ns = namespace(s="x") %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}',
    '{% set ns = namespace(s="x") %}{% for i in range(40) %}{% set t %}{{ ns.s }}{{ ns.s }}{% endset %}'
    '{% set ns.s = t %}{% endfor %}',
]


@contextmanager
def small_peak() -> Iterator[None]:
    """Fails unless the block's traced memory peak stays under PEAK_BYTES."""
    tracemalloc.start()
    try:
        yield
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < PEAK_BYTES, f"the render held {peak} bytes at its peak"


def render_body(root: Path, body: str, limits: RenderLimits | None = None) -> BaseException:
    make(root, "t", subject_txt="Hello", body_txt=body)
    context = {**sample_context("en"), "day": date(2026, 12, 2)}
    with small_peak(), pytest.raises(TemplateRenderError) as caught:
        render(find(root, "t", "en", "en"), context, limits)
    return caught.value


@pytest.mark.parametrize("bomb", BOMBS)
def test_an_outbound_template_refuses_a_huge_value_before_building_it(tmp_path: Path, bomb: str) -> None:
    error = render_body(tmp_path, "Dear customer,\n{{ " + bomb + " }}\n")
    assert str(error).startswith(f"{tmp_path / 't' / 'body.txt'}:2: refused by the sandbox: "), str(error)
    assert "more than" in str(error)


@pytest.mark.parametrize("body", DOUBLINGS)
def test_a_value_doubled_in_a_loop_stops_at_the_size_limit(tmp_path: Path, body: str) -> None:
    error = render_body(tmp_path, body + "{{ ns.s|length }}", RenderLimits(seconds=600, max_bytes=100_000))
    assert "more than the limit of 100000 (outbound.template_max_bytes)" in str(error), str(error)


def test_the_limit_is_the_configured_template_max_bytes(tmp_path: Path) -> None:
    error = render_body(tmp_path, '{{ "%5000d" % 1 }}', RenderLimits(max_bytes=1000))
    assert str(error) == (f"{tmp_path / 't' / 'body.txt'}:1: refused by the sandbox: formatting '%5000d' would "
                          f"build about 5007 characters or items, more than the limit of 1000 "
                          f"(outbound.template_max_bytes)")


def test_ordinary_formatting_still_renders(tmp_path: Path) -> None:
    make(tmp_path, "t", subject_txt="Hello",
         body_txt='{{ "{:,}".format(12345) }}|{{ "%05.2f" % 3.14159 }}|{{ "%(n)s" % {"n": 1} }}|{{ "-" * 5 }}|'
                  '{{ "ab"|center(6) }}|{{ [1, 2]|join(", ") }}|{{ "%s+%s"|format("a", "b") }}|{{ 2 ** 10 }}|'
                  '{{ "{0:%Y-%m-%d}".format(day) }}|{{ "a" ~ "b" + "c" }}|{{ "x\ty".expandtabs(2) }}')
    context = {**sample_context("en"), "day": date(2026, 12, 2)}
    rendered = render(find(tmp_path, "t", "en", "en"), context)
    assert rendered.text == "12,345|03.14|1|-----|  ab  |1, 2|a+b|1024|2026-12-02|abc|x y"


def _rule_expression(bomb: str) -> None:
    Expression(bomb, Position("rules.yaml", 3, 5)).evaluate({"day": date(2026, 12, 2)})


def _rule_text(bomb: str) -> None:
    TextTemplate("Call {{ " + bomb + " }}", Position("rules.yaml", 4, 7), "title").render({"day": date(2026, 12, 2)})


def _folder(bomb: str) -> None:
    folder_for("Customers/{{ " + bomb + " }}", {"day": date(2026, 12, 2)})


@pytest.mark.parametrize("bomb", ['"%99999999d" % 1', '"{:>99999999}".format(1)', '"x" * 99999999'])
@pytest.mark.parametrize(("where", "renders", "error"), [
    ("rule expression", _rule_expression, ExpressionError),
    ("rule text", _rule_text, ExpressionError),
    ("filing folder", _folder, ValueError),
])
def test_rules_and_folder_names_share_the_bounded_sandbox(where: str, renders: Callable[[str], None],
                                                          error: type[Exception], bomb: str) -> None:
    with small_peak(), pytest.raises(error) as caught:
        renders(bomb)
    assert "more than the limit of 2000000 (outbound.template_max_bytes)" in str(caught.value), where
