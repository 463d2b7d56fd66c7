"""A template's rendering is bounded in time and output (outbound.template_max_seconds / template_max_bytes):
a mistaken loop fails the mail with a clear error instead of stalling sending."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from maild.cli.context import AppContext
from maild.cli.send import send
from maild.cli.setup import initialise
from maild.outbound import outbox
from maild.store.db import Database
from maild.templates.loader import find
from maild.templates.render import RenderLimits, TemplateRenderError, render
from maild.templates.sample import sample_context
from tests.helpers import config_at
from tests.templates.test_render import make

DEADLINE = 120.0  # seconds the test waits for the render to stop (it must stop well before: see the limits)


def render_bounded(root: Path, limits: RenderLimits, **parts: str) -> BaseException | None:
    """Render template `t` in a thread; the error it ended with (None if it rendered). Fails the test if the
    render has not ended by DEADLINE (without limits a runaway loop never does)."""
    make(root, "t", **{"subject_txt": "Hello", "body_txt": "Body", **parts})
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            render(find(root, "t", "en", "en"), sample_context("en"), limits)
        except BaseException as exc:  # handed to the test
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(DEADLINE)
    assert outcome, "the render was still running: nothing bounds it"
    return outcome[0]


LOOPS = [
    ("nested loops", "a\n{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", 2),
    ("exponential macro", "a\nb\n{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
                          "{{ f(80) }}", 3),
    ("many loops in a macro", "a\n{% macro row() %}{% for i in range(1000) %}.{% endfor %}{% endmacro %}"
                              "{% for i in range(100000) %}{% set r = row() %}{% endfor %}", 2),
]


@pytest.mark.parametrize(("label", "body", "line"), LOOPS, ids=[label for label, _, _ in LOOPS])
def test_a_template_that_runs_too_long_fails_with_the_reason_and_its_file(tmp_path: Path, label: str, body: str,
                                                                          line: int) -> None:
    error = render_bounded(tmp_path, RenderLimits(seconds=0.5), body_txt=body)
    assert isinstance(error, TemplateRenderError), error
    assert str(error).startswith(f"{tmp_path / 't' / 'body.txt'}:{line}: "), label
    assert "rendering took longer than 0.5 s (outbound.template_max_seconds)" in str(error)


def test_a_template_that_writes_too_much_fails_with_the_reason(tmp_path: Path) -> None:
    error = render_bounded(tmp_path, RenderLimits(seconds=600, max_bytes=100_000),
                           body_html="<p>\n{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}</p>")
    assert isinstance(error, TemplateRenderError), error
    assert str(error) == (f"{tmp_path / 't' / 'body.html'}: the rendered mail is larger than 100000 bytes "
                          f"(outbound.template_max_bytes)")


def test_the_limits_count_the_whole_template_and_leave_normal_ones_alone(tmp_path: Path) -> None:
    make(tmp_path, "t", subject_txt="Hello", body_txt="{{ 'x' * 60 }}", body_html="{{ 'y' * 60 }}")
    rendered = render(find(tmp_path, "t", "en", "en"), sample_context("en"), RenderLimits(max_bytes=200))
    assert rendered.text == "x" * 60 and rendered.html == "y" * 60
    with pytest.raises(TemplateRenderError, match=r"body\.html: the rendered mail is larger than 100 bytes"):
        render(find(tmp_path, "t", "en", "en"), sample_context("en"), RenderLimits(max_bytes=100))


def test_send_with_a_looping_template_fails_with_a_clear_error_and_queues_nothing(tmp_path: Path) -> None:
    config_file = initialise(tmp_path / "home", samples=False)
    data = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    data["sources"] = []
    data["outbound"]["template_max_seconds"] = 0.5
    config_file.write_text(yaml.safe_dump(data), encoding="utf-8")
    make(tmp_path / "home" / "templates", "looping", subject_txt="Hello {{ contact.name | default('you') }}",
         body_txt="Dear customer,\n{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(CliRunner().invoke(
        send, ["looping", "--to", "someone@customer.example", "--queue-only"],
        obj=AppContext(str(config_file), False))), daemon=True)
    thread.start()
    thread.join(DEADLINE)
    assert outcome, "maild send was still rendering: nothing bounds it"
    result = outcome[0]
    assert result.exit_code == 1, result.output  # type: ignore[attr-defined]
    assert "looping/body.txt:2: rendering took longer than 0.5 s" in result.output  # type: ignore[attr-defined]
    db = Database(config_at(config_file).database_url)
    assert outbox.listing(db) == []
    db.dispose()
