"""The classification samples: flufl.bounce's real bounces (labelled), written notices and auto-replies, human mail."""

from __future__ import annotations

import json
from pathlib import Path

from maild.classify.base import Settings

HERE = Path(__file__).parent / "samples"
FLUFL = HERE / "flufl"
WRITTEN = HERE / "written"
HUMAN = HERE / "human"
SETTINGS = Settings(instance_id="test01", return_path="bounces@example.com")


def flufl_labels(which: str) -> dict[str, dict]:
    labels = json.loads((FLUFL / "labels.json").read_text())
    return {name: label for name, label in labels.items() if label["set"] == which}


def human_samples() -> list[Path]:
    """Mail people wrote: the samples here, maild's own sample mail, and the test mails of other tests."""
    root = Path(__file__).parents[2]
    return sorted([*HUMAN.glob("*.eml"), *(root / "maild" / "samples").glob("*.eml")])
