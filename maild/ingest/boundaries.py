"""MIME boundary lines matched without compiling a regular expression per multipart (parser processes only).

The standard library's email parser compiles
`(?P<sep>--BOUNDARY)(?P<end>--)?(?P<ws>[ \\t]*)(?P<linesep>\\r\\n|\\r|\\n)?$`
for every multipart it meets. Boundaries are unique per message, so the `re` cache never helps, and the compile
costs about a tenth of parsing a mail. `install()` gives `email.feedparser` a `re` whose `compile` returns a
`BoundaryMatcher` for exactly that pattern (same answers, string operations) and the real `re.compile` for any
other pattern, so a change of the standard library's pattern only turns the shortcut off.
"""

from __future__ import annotations

import email.feedparser
import re
from typing import Any

_HEAD = "(?P<sep>"
_TAIL = r")(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$"


class BoundaryMatch:
    """What the parser reads of a regular expression's match: its named groups."""

    __slots__ = ("_groups",)

    def __init__(self, sep: str, end: str | None, ws: str, linesep: str | None) -> None:
        self._groups = {"sep": sep, "end": end, "ws": ws, "linesep": linesep}

    def group(self, name: str) -> str | None:
        return self._groups[name]


class BoundaryMatcher:
    """`match(line)` as the compiled boundary pattern answers it: the separator at the start, `--` when it closes
    the multipart, blanks, at most one line break, then the end of the line (or a last `\\n`, as `$` allows)."""

    __slots__ = ("_size", "separator")

    def __init__(self, separator: str) -> None:
        self.separator = separator
        self._size = len(separator)

    def match(self, line: str) -> BoundaryMatch | None:
        if not line.startswith(self.separator):
            return None
        rest = line[self._size:]
        if rest.startswith("--"):
            found = _after_separator(rest[2:])
            if found is not None:
                return BoundaryMatch(self.separator, "--", *found)
        found = _after_separator(rest)
        return None if found is None else BoundaryMatch(self.separator, None, *found)


def _after_separator(rest: str) -> tuple[str, str | None] | None:
    body = rest.lstrip(" \t")
    blanks = rest[:len(rest) - len(body)]
    if body.startswith("\r\n"):
        linesep: str | None = "\r\n"
        left = body[2:]
    elif body[:1] in ("\r", "\n") and body:
        linesep, left = body[0], body[1:]
    else:
        linesep, left = None, body
    return (blanks, linesep) if left in ("", "\n") else None


class _FeedparserRe:
    """The `re` module, but for the boundary pattern."""

    def __getattr__(self, name: str) -> Any:
        return getattr(re, name)

    @staticmethod
    def compile(pattern: Any, flags: int = 0) -> Any:
        if flags == 0 and isinstance(pattern, str) and pattern.startswith(_HEAD) and pattern.endswith(_TAIL):
            escaped = pattern[len(_HEAD):-len(_TAIL)]
            separator = re.sub(r"\\(.)", r"\1", escaped, flags=re.DOTALL)
            if re.escape(separator) == escaped:
                return BoundaryMatcher(separator)
        return re.compile(pattern, flags)


def install() -> None:
    """Use the matcher in this process's email parser (a parser process: the daemon keeps the standard one)."""
    email.feedparser.re = _FeedparserRe()  # type: ignore[assignment]
