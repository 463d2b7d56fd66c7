"""Durations as rule files write them: `7d`, `2h`, `-3d`, `1w`, `90m`, `30s`, `1d12h`.

An optional sign, then one or more `<whole number><unit>` parts with units w, d, h, m, s in that order
(each at most once); no spaces. `0d` is zero. Used for sweep offsets and windows, `schedule.every`,
task due times and the `duration()` helper of expressions.
"""

from __future__ import annotations

import re
from datetime import timedelta

EXAMPLES = "7d, 2h, -3d, 1w"

_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
_DURATION = re.compile(r"^(?P<sign>[+-]?)(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?"
                       r"(?:(?P<s>\d+)s)?$")


def parse_duration(text: str) -> timedelta:
    """The timedelta of `text`; ValueError (naming the expected form) for anything else."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if match is None or not any(match[unit] for unit in _UNITS):
        raise ValueError(f"expected a duration like {EXAMPLES}; got {text!r}")
    value = timedelta(**{name: int(match[unit]) for unit, name in _UNITS.items() if match[unit]})
    return -value if match["sign"] == "-" else value


def format_duration(value: timedelta) -> str:
    """Text `parse_duration` reads back as `value` (`-3d`, `21d`, `1d12h`, `0d`; days, not weeks); for summaries."""
    seconds = int(value.total_seconds())
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return sign + ("".join(parts) or "0d")
