"""The shipped list of free-mail domains (freemail.txt), extended by config."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def shipped() -> frozenset[str]:
    text = (resources.files("maild.matchers") / "freemail.txt").read_text(encoding="utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#"))
