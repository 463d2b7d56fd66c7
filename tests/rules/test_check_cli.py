"""`maild rules check` through the real command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import invoke, write_config


def home_with(tmp_path: Path, files: dict[str, str], templates: tuple[str, ...] = ()) -> Path:
    config = write_config(tmp_path / "home", f"sqlite:///{tmp_path / 'home' / 'maild.db'}", [])
    with config.open("a") as text:
        text.write("rules:\n  webhook_secrets:\n    report: {env: HOOK_SECRET}\n")
    for name, text in files.items():
        (tmp_path / "home" / "rules").mkdir(exist_ok=True)
        (tmp_path / "home" / "rules" / name).write_text(text, encoding="utf-8")
    for template in templates:
        (tmp_path / "home" / "templates" / template).mkdir(parents=True)
    return config


GOOD = """\
rules:
  - name: tell-the-owner
    on: {event: mail.matched}
    do:
      - send: {template: note, to: owner}
  - name: morning-report
    on: {schedule: {cron: "0 8 * * mon-fri"}}
    do:
      - webhook: {url: "https://hooks.example/report", secret: report}
"""


def test_check_lists_the_rules_when_all_is_well(tmp_path: Path) -> None:
    config = home_with(tmp_path, {"a.yaml": GOOD, "b.yml": "rules:\n  - name: chase\n"
                                  "    on: {sweep: invoice, date: due_on, offset: 7d, until: 21d}\n"
                                  "    do: [stop: true]\n"}, templates=("note",))
    result = invoke(config, "rules", "check")
    lines = result.stdout.splitlines()
    assert lines[0].endswith("rules/: 2 files, 3 rules OK (timezone UTC)")
    assert lines[1].split() == ["tell-the-owner", "event", "mail.matched", "a.yaml"]
    assert lines[2].split() == ["morning-report", "cron", '"0', "8", "*", "*", 'mon-fri"', "UTC", "a.yaml"]
    assert lines[3].split() == ["chase", "sweep", "invoice.due_on", "+7d", "until", "+21d", "b.yml"]


def test_check_prints_every_error_and_exits_1(tmp_path: Path) -> None:
    bad = GOOD.replace("template: note", "template: nope").replace("mon-fri", "1-5")
    config = home_with(tmp_path, {"a.yaml": bad, "b.yaml": "rules: [\n"}, templates=("note",))
    result = invoke(config, "rules", "check", check=False)
    assert result.returncode == 1 and result.stdout == ""
    errors = result.stderr.splitlines()
    templates = tmp_path / "home" / "templates"
    assert errors[0] == (f"{tmp_path}/home/rules/a.yaml:5:26: rules[0].do[0].send.template: no template 'nope' in "
                         f"{templates} (did you mean 'note'?) (templates found: note)")
    assert errors[1].startswith(f"{tmp_path}/home/rules/a.yaml:7:27: rules[1].on.schedule.cron: write weekdays by "
                                "name in the 5th field (mon-fri, sun)")
    assert errors[2] == (f"{tmp_path}/home/rules/b.yaml:2:1: invalid YAML: expected the node content, but found "
                         "'<stream end>'")
    assert errors[3] == f"3 error(s) in {tmp_path}/home/rules/"


def test_check_relative_paths_when_run_from_the_home(tmp_path: Path) -> None:
    config = home_with(tmp_path, {"dunning.yaml": "rules:\n  - name: x\n    on: {sweep: invoice, date: due_on, "
                                                  "offset: seven days}\n    do: [stop: true]\n"})
    result = subprocess.run([sys.executable, "-m", "maild", "--config", str(config), "rules", "check"],
                            capture_output=True, text=True, cwd=config.parent, timeout=120)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == ("rules/dunning.yaml:3:48: rules[0].on.offset: expected a duration like "
                                             "7d, 2h, -3d, 1w; got 'seven days'")


def test_check_dir_option_and_missing_folder(tmp_path: Path) -> None:
    config = home_with(tmp_path, {})
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "x.yaml").write_text("rules:\n  - name: every-hour\n    on: {schedule: {every: 1h}}\n"
                                  "    do: [stop: true]\n")
    out = invoke(config, "rules", "check", "--dir", str(other)).stdout
    assert "1 file, 1 rule OK" in out and "every-hour" in out and "every 1h" in out
    missing = invoke(config, "rules", "check").stdout
    assert "0 files, 0 rules OK (the folder does not exist)" in missing


def test_help_explains() -> None:
    text = invoke(None, "rules", "check", "--help", env={"MAILD_CONFIG": ""}).stdout
    assert "FILE:LINE:COLUMN" in text and "--dir" in text and "exits 1" in text
    assert "check" in invoke(None, "rules", "--help", env={"MAILD_CONFIG": ""}).stdout
