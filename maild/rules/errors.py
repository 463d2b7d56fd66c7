"""Where a rule file has a problem: positions and the errors the loader and the expressions raise."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Position:
    """Where something is in a rule file; line and column are 1-based."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class RuleError(ValueError):
    """One problem in a rule file: `FILE:LINE:COLUMN: key: message`."""

    def __init__(self, position: Position | None, key: str, message: str) -> None:
        self.position = position
        self.key = key
        self.message = message
        where = f"{position}: " if position else ""
        super().__init__(f"{where}{key}: {message}" if key else f"{where}{message}")


class RuleErrors(ValueError):
    """Every problem found in a set of rule files (the loader reports all of them, not just the first)."""

    def __init__(self, errors: list[RuleError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))
