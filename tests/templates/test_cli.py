"""`maild templates check|render` (the group is invoked directly; registration lives in maild.cli.main)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from maild.cli.context import AppContext
from maild.cli.templates import templates

SAMPLES = Path(__file__).resolve().parents[2] / "maild" / "samples" / "templates"


def run(config: Path, *args: str):
    return CliRunner().invoke(templates, list(args), obj=AppContext(str(config), False))


def config_with(tmp_path: Path, templates_dir: str) -> Path:
    path = tmp_path / "home" / "maild.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"outbound:\n  templates_dir: {templates_dir}\n  default_language: en\n")
    return path


def test_check_and_render_the_samples(tmp_path: Path) -> None:
    config = config_with(tmp_path, str(SAMPLES))
    result = run(config, "check", "--lang", "de")
    assert result.exit_code == 0, result.output
    assert "8 template(s) OK" in result.output
    result = run(config, "render", "dunning-reminder", "--lang", "de")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Subject: Zahlungserinnerung: Rechnung FA2611-0007 vom 03.11.2026\n\nHallo")
    html = run(config, "render", "followup", "--html")
    assert html.exit_code == 0 and "<a href=" in html.output


def test_templates_dir_is_relative_to_the_config_and_errors_exit_1(tmp_path: Path) -> None:
    config = config_with(tmp_path, "tpl")
    broken = tmp_path / "home" / "tpl" / "broken"
    broken.mkdir(parents=True)
    (broken / "subject.txt").write_text("Hi {{ contact.first_name }}")
    (broken / "body.txt").write_text("one\n{{ nobody.name }}\n")
    result = run(config, "check")
    assert result.exit_code == 1
    assert f"{broken / 'body.txt'}:2: undefined placeholder" in result.output
    rendered = run(config, "render", "broken")
    assert rendered.exit_code == 1 and f"{broken / 'body.txt'}:2:" in rendered.output
    missing = run(config, "render", "nope")
    assert missing.exit_code == 1 and "no template 'nope'" in missing.output
