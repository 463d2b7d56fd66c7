"""The shipped rule packs: they load, `maild init` installs them, and `maild rules check` passes on a fresh home."""

from __future__ import annotations

from datetime import timedelta
from importlib import resources
from pathlib import Path

from maild.rules.loader import load_rules
from maild.rules.model import MoveAction, SendAction, SweepTrigger
from tests.helpers import invoke

SAMPLES = Path(str(resources.files("maild") / "samples"))


def test_the_packs_load_against_the_shipped_templates() -> None:
    ruleset = load_rules(SAMPLES / "rules", timezone="Europe/Berlin", templates_dir=SAMPLES / "templates")
    assert ruleset.files == ("dunning.yaml", "meeting-followup.yaml", "shared-inbox.yaml")
    names = [rule.name for rule in ruleset.rules]
    assert names == ["dunning-due-soon", "dunning-level-1", "dunning-level-2", "dunning-level-3",
                     "dunning-level-3-repeat", "dunning-letter-bounced-to-billing",
                     "meeting-followup", "file-matched-mail", "triage-unmatched-mail",
                     "notify-owner-of-new-thread"]
    by_name = {rule.name: rule for rule in ruleset.rules}
    sweeps = {name: rule.trigger for name, rule in by_name.items() if isinstance(rule.trigger, SweepTrigger)}
    windows = {name: (t.offset.days, t.until.days if t.until is not None else None) for name, t in sweeps.items()
               if t.record == "invoice"}
    assert windows == {"dunning-due-soon": (-3, 0), "dunning-level-1": (7, 21), "dunning-level-2": (21, 35),
                       "dunning-level-3": (35, None), "dunning-level-3-repeat": (14, None)}
    level2 = by_name["dunning-level-2"].actions[0].spec
    assert isinstance(level2, SendAction) and level2.attach == ("dunning_pdf:2",)  # the reminder letter
    assert [a.name for a in by_name["dunning-level-3"].actions] == ["send", "task", "set"]
    assert by_name["dunning-level-3-repeat"].once_per is not None
    assert sweeps["meeting-followup"].offset == timedelta(hours=2) and sweeps["meeting-followup"].until == timedelta(
        days=7)
    assert by_name["file-matched-mail"].actions[0].spec == MoveAction(folder=None)


def test_init_installs_the_packs_and_check_passes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    invoke(None, "init", str(home))
    config = home / "maild.yaml"
    assert sorted(p.name for p in (home / "rules").iterdir()) == [
        "dunning.yaml", "meeting-followup.yaml", "shared-inbox.yaml"]
    for template in ("payment-due-soon", "dunning-1", "dunning-2", "dunning-3", "new-thread"):
        assert {"subject.txt", "body.txt", "subject.de.txt", "body.de.txt"} <= {
            p.name for p in (home / "templates" / template).iterdir()}
    out = invoke(config, "rules", "check").stdout
    assert "3 files, 10 rules OK" in out and "dunning-level-3-repeat" in out
    assert "OK" in invoke(config, "templates", "check", "--lang", "de").stdout


def test_init_never_overwrites_a_users_rule_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "rules").mkdir(parents=True)
    mine = "# my own dunning\nrules: []\n"
    (home / "rules" / "dunning.yaml").write_text(mine)
    invoke(None, "init", str(home))
    assert (home / "rules" / "dunning.yaml").read_text() == mine
    assert (home / "rules" / "shared-inbox.yaml").is_file()
    invoke(None, "init", str(home), "--force")
    assert (home / "rules" / "dunning.yaml").read_text() == mine
