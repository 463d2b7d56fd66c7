"""Spreadsheet formula injection: the `'` export puts before a cell a spreadsheet would run; import takes it off.

A cell starting with =, +, -, @, tab or CR is a formula (or DDE command) to Excel and LibreOffice. Export writes
`'` before it (as OWASP recommends), so the spreadsheet shows it as text. So that import gives back exactly what
export read, a value that already starts with apostrophes followed by such a character gets one more `'`, and
import removes one `'` from every cell that is apostrophes followed by such a character.
"""

from __future__ import annotations

import re

TRIGGERS = "=+-@\t\r"
_EXPORT = re.compile(r"'*[=+\-@\t\r]")
_IMPORT = re.compile(r"'+[=+\-@\t\r]")


def neutralise(cell: str) -> str:
    """`=HYPERLINK(...)` -> `'=HYPERLINK(...)`; every other cell as it is."""
    return "'" + cell if _EXPORT.match(cell) else cell


def restore(cell: str) -> str:
    """The inverse of `neutralise`: `'=HYPERLINK(...)` -> `=HYPERLINK(...)`."""
    return cell[1:] if _IMPORT.match(cell) else cell
